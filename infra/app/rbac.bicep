// Every role the app's managed identity holds, and nothing more. Each assignment is named
// guid(scope, principal, role), so a re-deployment finds it instead of adding a copy.
param principalId string
param storageAccountName string
param cosmosAccountName string
param appInsightsName string
@description('The Event Grid topic of DICOM events; empty when the deployment has none.')
param eventGridTopicName string = ''

// Built-in Azure role definition ids (the same in every tenant).
var storageRoles = [
  {
    // Storage Blob Data Owner: DICOM files, and the Functions host's own blobs and the Flex
    // deployment package (the host needs Owner, not Contributor, for AzureWebJobsStorage).
    id: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
    what: 'blob'
  }
  {
    // Storage Queue Data Contributor: the job queues (send, receive, delete, poison).
    id: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
    what: 'queue'
  }
  {
    // Storage Table Data Contributor: the Functions host's own tables (its diagnostic
    // events, AzureFunctionsDiagnosticEvents*, through AzureWebJobsStorage). The app keeps no
    // table: operation records live in Cosmos DB (docs/azure-backend.md, "Operation records").
    id: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
    what: 'table'
  }
]
// Monitoring Metrics Publisher: telemetry to Application Insights with local auth off.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
// Cosmos DB Built-in Data Contributor: read, write, query and patch items (data plane only;
// no account keys, no database or container management).
var cosmosDataContributor = '00000000-0000-0000-0000-000000000002'
// EventGrid Data Sender: publish DICOM events to the topic (nothing else on it).
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource cosmosAccount 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

resource eventGridTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = if (!empty(eventGridTopicName)) {
  name: eventGridTopicName
}

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in storageRoles: {
    name: guid(storageAccount.id, principalId, role.id)
    scope: storageAccount
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
    }
  }
]

resource monitoringAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

resource cosmosAssignment 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmosAccount
  name: guid(cosmosAccount.id, principalId, cosmosDataContributor)
  properties: {
    principalId: principalId
    roleDefinitionId: '${cosmosAccount.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    scope: cosmosAccount.id
  }
}

resource eventGridAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(eventGridTopicName)) {
  name: guid(eventGridTopic.id, principalId, eventGridDataSender)
  scope: eventGridTopic
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
  }
}
