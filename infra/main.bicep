// The DICOMweb service in one resource group: `azd up` provisions this, then deploys the app.
// Identity everywhere: the Function App reaches Storage, Cosmos DB and Application Insights
// with one user-assigned managed identity; shared keys and local auth are off on all three,
// and no key or connection string is an app setting or an output.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the names of all resources.')
param environmentName string

@minLength(1)
@description('Region of all resources (one that offers Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; empty derives rg-<environment>.')
param resourceGroupName string = ''

@minLength(1)
@description('Audience(s) tokens must carry, comma-separated: the App ID URI (api://...) and/or the client id of the app registration.')
param authAudience string

@description('Require Entra ID bearer tokens. Turn off only for a throw-away deployment without patient data.')
param authEnabled bool = true

@description('Origins allowed to call the API from a browser (the OHIF viewer), comma-separated, or *; empty turns CORS off.')
param corsOrigins string = ''

@description('Largest STOW request body in bytes (the Functions front end and the app both enforce it).')
param maxRequestBytes int = 4294967296

@description('Most instances the Flex Consumption plan scales out to.')
param maximumInstanceCount int = 40

@allowed([
  2048
  4096
])
@description('Memory of one Flex Consumption instance in MB; transcoding and rendering need headroom.')
param instanceMemoryMB int = 2048

// Flex Consumption gives Python apps 1 concurrent HTTP request per instance unless told
// otherwise (16 or 32 for other languages, by instance memory): a synchronous Python function
// holds its worker for the whole request. Left at 1, every request in flight would take an
// instance of its own, so the app could serve no more than maximumInstanceCount requests at
// once and a viewer's burst of frame requests would start one cold instance each. This app is
// async from end to end: a request mostly waits on Blob Storage or Cosmos DB, bodies stream in
// and out in MiB-sized blocks and ranges (a multi-GB STOW holds a few MiB, not the body), and
// parsing, transcoding and rendering run in worker threads. So 16, the platform's figure for
// 2048 MB instances in the languages that share an instance: about 128 MB of the instance per
// request in flight, against a few MiB for a streamed STOW or WADO request; transcoding and
// rendering (inputs up to DICOM_MAX_TRANSCODE_BYTES, 100 MiB) are the heavy and rare case.
// With instanceMemoryMB 4096, 32 keeps the same share. See infra/README.md.
@minValue(1)
@description('HTTP requests one Flex Consumption instance serves at once before the platform adds an instance (16 suits 2048 MB, 32 suits 4096 MB).')
param httpPerInstanceConcurrency int = 16

@description('Publish DICOM events (DicomImageCreated, Updated, Deleted) to an Event Grid topic this deployment creates.')
param eventGridTopic bool = false

@description('Data partitions (Azure: enableDataPartitions): every DICOMweb route under /partitions/{name}. Cannot be turned off again once partitions other than Microsoft.Default exist.')
param dataPartitions bool = false

@allowed([
  'eventgrid'
  'cloudevents'
])
@description('Schema of the DICOM events: Event Grid schema or CloudEvents 1.0.')
param eventsSchema string = 'eventgrid'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-dicom-${resourceToken}'
// The deployment package container of Flex Consumption (its name must stay below 64 chars).
var deploymentContainerName = 'app-package-${take(resourceToken, 16)}'
var tenantId = tenant().tenantId
var authIssuers = 'https://login.microsoftonline.com/${tenantId}/v2.0,https://sts.windows.net/${tenantId}/'
var authJwksUrl = 'https://login.microsoftonline.com/${tenantId}/discovery/v2.0/keys'

// Names the app reads (dicom_core/settings.py defaults; cosmos_schema.py for containers).
var cosmosDatabaseName = 'dicom'
var blobContainerName = 'dicom-files'
var cleanupQueueName = 'blob-cleanup'
var reindexQueueName = 'reindex-batches'
var bulkUpdateQueueName = 'bulk-update-batches'
var exportQueueName = 'export-batches'
// Days a deleted DICOM file (blob soft delete) or container stays restorable: the window of the
// Cosmos DB index's continuous backup (Continuous7Days in app/cosmos.bicep), so files and index
// can be brought back to the same point in time and no deleted data outlives the other.
var deletedDataRetentionDays = 7

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

// The one identity of the app; rbac.bicep grants it exactly what it uses.
module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-dicom-${resourceToken}'
    location: location
    tags: tags
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.7.0' = {
  name: 'logAnalytics'
  scope: rg
  params: {
    name: 'log-${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

module appInsights 'br/public:avm/res/insights/component:0.4.1' = {
  name: 'appInsights'
  scope: rg
  params: {
    name: 'appi-${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true // telemetry is sent with the identity (Monitoring Metrics Publisher)
  }
}

module storage 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stdicom${resourceToken}'
    location: location
    tags: tags
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity only: no account key can reach DICOM data
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      // Soft delete, written out rather than left to the module's defaults (both on, blobs for
      // 7 days, in the version pinned above): it is a decision about patients' data. On: a study
      // deleted by mistake (a wrong DELETE, an operator's script, a bug in the blob-cleanup job)
      // keeps its files for deletedDataRetentionDays; a stored file is the whole instance, so an
      // undeleted one can simply be stored again. The API still treats a delete as final, as the
      // DICOM service does: the app never reads soft-deleted blobs, and they are purged when the
      // days run out. The price: deleted data is billed like live data until then, and PHI
      // lingers as long (as it does in the index's backup). Covers every container of the account.
      deleteRetentionPolicyEnabled: true
      deleteRetentionPolicyDays: deletedDataRetentionDays
      containerDeleteRetentionPolicyEnabled: true // a deleted dicom-files container comes back whole
      containerDeleteRetentionPolicyDays: deletedDataRetentionDays
      // No versioning: file names carry the watermark and are written create-only, so no file is
      // ever overwritten, and versions would keep nothing that soft delete does not.
      isVersioningEnabled: false
      // dicom-files: the DICOM instances; app-package: the Flex Consumption deployment package.
      containers: [
        {
          name: blobContainerName
        }
        {
          name: deploymentContainerName
        }
      ]
    }
    queueServices: {
      // One queue per queue-triggered function in function_app.py (the identity may not
      // create queues): blob-cleanup, files of deleted instances; reindex-batches, the
      // extended-query-tag reindex; bulk-update-batches, bulk update (a study a message);
      // export-batches, export (a batch of instances a message).
      // -poison: the host's dead letters after maxDequeueCount failures (host.json).
      queues: [
        {
          name: cleanupQueueName
        }
        {
          name: '${cleanupQueueName}-poison'
        }
        {
          name: reindexQueueName
        }
        {
          name: '${reindexQueueName}-poison'
        }
        {
          name: bulkUpdateQueueName
        }
        {
          name: '${bulkUpdateQueueName}-poison'
        }
        {
          name: exportQueueName
        }
        {
          name: '${exportQueueName}-poison'
        }
      ]
    }
    tableServices: {} // Table Storage: the Functions host's diagnostic-events tables only
  }
}

module cosmos 'app/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: 'cosmos-dicom-${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
  }
}

// Optional: the Event Grid topic of DICOM events (app/events.bicep); subscribe consumers to it.
module events 'app/events.bicep' = if (eventGridTopic) {
  name: 'events'
  scope: rg
  params: {
    name: 'evgt-dicom-${resourceToken}'
    location: location
    tags: tags
    schema: eventsSchema
  }
}

module plan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'plan'
  scope: rg
  params: {
    name: 'plan-${resourceToken}'
    location: location
    tags: tags
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true // Linux
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planId: plan.outputs.resourceId
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: appInsights.outputs.name
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmosDatabaseName
    blobContainerName: blobContainerName
    authEnabled: authEnabled
    authAudience: authAudience
    authIssuers: authIssuers
    authJwksUrl: authJwksUrl
    corsOrigins: corsOrigins
    maxRequestBytes: maxRequestBytes
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    eventsTopicEndpoint: eventGridTopic ? events.outputs.endpoint : ''
    eventsSchema: eventsSchema
    dataPartitions: dataPartitions
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    cosmosAccountName: cosmos.outputs.name
    appInsightsName: appInsights.outputs.name
    eventGridTopicName: eventGridTopic ? events.outputs.name : ''
  }
}

// Outputs named like the app settings (azd stores them in .azure/<env>/.env); none is secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_FUNCTION_NAME string = api.outputs.name
output AzureWebJobsStorage__blobServiceUri string = 'https://${storage.outputs.name}.blob.${environment().suffixes.storage}'
output AzureWebJobsStorage__queueServiceUri string = 'https://${storage.outputs.name}.queue.${environment().suffixes.storage}'
output AzureWebJobsStorage__clientId string = identity.outputs.clientId
output COSMOS__accountEndpoint string = cosmos.outputs.endpoint
output COSMOS__clientId string = identity.outputs.clientId
output DICOM_COSMOS_DATABASE string = cosmosDatabaseName
output DICOM_BLOB_CONTAINER string = blobContainerName
output DICOM_AUTH_AUDIENCE string = authAudience
output DICOM_AUTH_ISSUER string = authIssuers
output DICOM_AUTH_JWKS_URL string = authJwksUrl
output DICOM_CORS_ORIGINS string = corsOrigins
output DICOM_EVENTS_TOPIC__topicEndpointUri string = eventGridTopic ? events.outputs.endpoint : ''
