import WireProtos

/// HEADERS payload from the client (`wire.v1.RequestHeaders`).
public typealias RequestHeaders = Wire_V1_RequestHeaders
/// HEADERS payload from the server (`wire.v1.ResponseHeaders`).
public typealias ResponseHeaders = Wire_V1_ResponseHeaders
/// TRAILERS payload (`wire.v1.Trailers`).
public typealias Trailers = Wire_V1_Trailers
/// One metadata entry (`wire.v1.MetadataEntry`).
public typealias MetadataEntry = Wire_V1_MetadataEntry
