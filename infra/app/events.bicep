// The Event Grid topic of DICOM events (Microsoft.HealthcareApis.DicomImageCreated, Updated,
// Deleted), deployed when main.bicep's eventGridTopic is on. The app publishes to it with its
// managed identity (rbac.bicep grants EventGrid Data Sender on this topic alone); keys are off.
// Subscriptions (a webhook, a queue, a function) are the consumer's to add.
param name string
param location string
param tags object = {}

@allowed([
  'eventgrid'
  'cloudevents'
])
@description('The schema the app publishes in (DICOM_EVENTS_SCHEMA); the topic must expect the same.')
param schema string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  // The topic's own identity, for subscriptions that deliver with it (to a Storage queue or
  // a Service Bus with keys off), once granted a data role on the destination.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: (schema == 'cloudevents') ? 'CloudEventSchemaV1_0' : 'EventGridSchema'
    disableLocalAuth: true // Entra ID only: the app's identity, no access keys
    // Flex Consumption without VNet integration reaches the topic over the public endpoint.
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
