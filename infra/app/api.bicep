// The Function App on Flex Consumption (Linux, Python 3.13) with identity-based settings only.
//
// A native Microsoft.Web/sites resource: Flex Consumption is configured through
// `functionAppConfig` (runtime, scale, deployment storage), which the pinned AVM web/site
// versions pass through differently; the resource itself is what they all produce.
param name string
param location string
param tags object = {}
param planId string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param cosmosEndpoint string
param cosmosDatabaseName string
param blobContainerName string
param authEnabled bool
param authAudience string
param authIssuers string
param authJwksUrl string
param corsOrigins string
param maxRequestBytes int
param maximumInstanceCount int
param instanceMemoryMB int
param httpPerInstanceConcurrency int
@description('Endpoint of the Event Grid topic of DICOM events; empty: events off.')
param eventsTopicEndpoint string = ''
param eventsSchema string = 'eventgrid'
@description('Data partitions on (DICOM_DATA_PARTITIONS).')
param dataPartitions bool = false

var blobServiceUri = 'https://${storageAccountName}.blob.${environment().suffixes.storage}'
var queueServiceUri = 'https://${storageAccountName}.queue.${environment().suffixes.storage}'
var tableServiceUri = 'https://${storageAccountName}.table.${environment().suffixes.storage}'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: planId
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Platform CORS stays unset on purpose: when set, the platform answers preflights itself
      // and DICOM_CORS_* (applied in the app, the same way locally) would be ignored.
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobServiceUri}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            // Set, not left to the platform, whose Python default is 1: the app is async and
            // streams, so one instance serves many requests (main.bicep says why 16).
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        // The version the project targets (pyproject.toml). From 3.13 the platform loads the
        // Python runtime the app pins (azure-functions-runtime in requirements.txt); Flex
        // Consumption supports 3.13 until 2029.
        version: '3.13'
      }
    }
  }
}

// The app settings as a child resource of their own (offline parsers skip nested ones).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // The Functions host's storage (queue triggers) and the DICOM files and job queues:
    // identity-based, so no account key exists anywhere (shared keys are off).
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: blobServiceUri
    AzureWebJobsStorage__queueServiceUri: queueServiceUri
    AzureWebJobsStorage__tableServiceUri: tableServiceUri
    // Cosmos DB index, identity-based (local auth is off on the account).
    COSMOS__accountEndpoint: cosmosEndpoint
    COSMOS__credential: 'managedidentity'
    COSMOS__clientId: identityClientId
    DICOM_STORAGE: 'azure'
    DICOM_COSMOS_DATABASE: cosmosDatabaseName
    DICOM_COSMOS_INDEX_CONTAINER: 'index'
    DICOM_COSMOS_SYSTEM_CONTAINER: 'system'
    DICOM_COSMOS_PARTITIONED_CONTAINER: 'partitioned'
    DICOM_BLOB_CONTAINER: blobContainerName
    // Bicep declares every database, container and queue; the identity has data roles only.
    DICOM_AZURE_CREATE_RESOURCES: 'false'
    // STOW spools parts on local disk while parsing; /tmp is the writable disk of Flex.
    DATA_DIR: '/tmp/dicom'
    DICOM_STAGING_DIR: '/tmp/dicom/staging'
    // Request size: the Functions front end's limit and the app's own (413 above it).
    FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(maxRequestBytes)
    DICOM_MAX_REQUEST_BYTES: string(maxRequestBytes)
    // HTTP streams (azurefunctions-extensions-http-fastapi) need init-time indexing.
    PYTHON_ENABLE_INIT_INDEXING: '1'
    // Entra ID bearer tokens with the DicomDataOwner / DicomDataReader app roles.
    DICOM_AUTH_ENABLED: string(authEnabled)
    DICOM_AUTH_AUDIENCE: authAudience
    DICOM_AUTH_ISSUER: authIssuers
    DICOM_AUTH_JWKS_URL: authJwksUrl
    DICOM_CORS_ORIGINS: corsOrigins
    DICOM_DATA_PARTITIONS: string(dataPartitions)
    // DICOM events to the deployment's Event Grid topic (when it has one), with the identity,
    // which holds EventGrid Data Sender on the topic. The source (Event Grid stamps its own
    // topic ID; CloudEvents keep this) names this app, as Azure's name the workspace.
    DICOM_EVENTS: empty(eventsTopicEndpoint) ? 'off' : 'eventgrid'
    DICOM_EVENTS_SCHEMA: eventsSchema
    DICOM_EVENTS_TOPIC__topicEndpointUri: eventsTopicEndpoint
    DICOM_EVENTS_TOPIC__credential: 'managedidentity'
    DICOM_EVENTS_TOPIC__clientId: identityClientId
    DICOM_EVENTS_SOURCE: site.id
    // Telemetry: the connection string only locates the resource (local auth is off);
    // ingestion is authorized with the identity through the authentication string.
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  }
}

output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
