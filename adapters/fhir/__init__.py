"""Any FHIR R4 server speaking IHE ITI Scheduling or plain REST; the wire and client Halaxy shares."""
