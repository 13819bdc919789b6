// The Cosmos DB (NoSQL) index: serverless, local (key) auth off, the database and the
// containers of dicom_core/storage/azure/cosmos_schema.py. The containers are read from
// cosmos-containers.json, which tests/infra checks against that module, so partition keys and
// indexing policies cannot drift from what the code queries with.
//
// Native resources (not the AVM database-account module): the container and data-plane
// role parameters of that module changed between versions, and the Bicep CLI that would
// check them cannot run here; these resource types and API versions are stable.
param name string
param location string
param tags object = {}
param databaseName string

var containers = loadJsonContent('cosmos-containers.json')

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session' // the adapter reads its own writes within a session
    }
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    disableLocalAuth: true // Entra ID only: the Cosmos SQL data-plane role in rbac.bicep
    disableKeyBasedMetadataWriteAccess: true // databases and containers come from here only
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: 'Continuous7Days'
      }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource container 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for spec in containers: {
    parent: database
    name: spec.name
    properties: {
      resource: {
        id: spec.name
        // One path ('Hash'), or the hierarchical key of the partitioned container
        // ('MultiHash', version 2): spec.partitionKey is the whole ARM definition.
        partitionKey: spec.partitionKey
        indexingPolicy: spec.indexingPolicy
        uniqueKeyPolicy: {
          uniqueKeys: spec.uniqueKeys
        }
      }
    }
  }
]

output name string = account.name
output endpoint string = account.properties.documentEndpoint
