// The OHIF Viewer's app-config.js when the local host serves it at /viewer (DICOM_VIEWER=true):
// one DICOMweb data source, this server's v2 API on the same origin, so no CORS and no
// sign-in. functions_host/viewer.py serves this file in place of the package's own.
//
// For a viewer on a site of its own in front of the deployed service, this file is the
// starting point: set api to '<SERVICE_API_URI>/v2' and routerBasename to '/', and add an
// oidc entry for Entra ID sign-in (README, "Connect OHIF").
//
// Data partitions: with DICOM_DATA_PARTITIONS=true the host serves this file with
// dataPartitions set to true, and the viewer reads one partition: the one the page's address
// names (/viewer/?partition=NAME), or Microsoft.Default. The name is read when the page loads,
// so a reload of a page without it goes back to Microsoft.Default.
const dataPartitions = false;
const partition = dataPartitions
  ? new URLSearchParams(window.location.search).get('partition') || 'Microsoft.Default'
  : null;
const api =
  window.location.origin +
  '/v2' +
  (partition === null ? '' : '/partitions/' + encodeURIComponent(partition));

window.config = {
  routerBasename: '/viewer',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  // Same origin: no cross-origin warning. Without a GPU (a server, a headless browser)
  // cornerstone draws on the CPU; it needs no banner to say so.
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName:
          'DICOMweb on Azure Functions (this server)' +
          (partition === null ? '' : ', partition ' + partition),
        name: 'dicomweb-functions',
        qidoRoot: api,
        wadoRoot: api,
        wadoUriRoot: api,
        // QIDO-RS here takes includefield and * ? wildcards (OHIF wraps search text in *...*,
        // so fuzzy matching adds nothing).
        qidoSupportsIncludeField: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        // A server that searches, not a static tree of JSON files.
        staticWado: false,
        // Frames through WADO-RS (multipart, as stored or decoded), drawn by cornerstone;
        // thumbnails the same way.
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsReject: false,
        // Metadata here leaves binary attributes out rather than naming BulkDataURIs.
        bulkDataURI: { enabled: false },
        omitQuotationForMultipartRequest: true,
        dicomUploadEnabled: false,
      },
    },
  ],
};
