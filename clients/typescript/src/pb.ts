/** The generated code of the contract (protobuf-es): messages, enums and service descriptors. */
export * from "./gen/quarry/v1/audit_pb.js";
export * from "./gen/quarry/v1/audit_service_pb.js";
export * from "./gen/quarry/v1/capabilities_service_pb.js";
export * from "./gen/quarry/v1/common_pb.js";
export * from "./gen/quarry/v1/dataset_pb.js";
export * from "./gen/quarry/v1/dataset_service_pb.js";
export * from "./gen/quarry/v1/error_reason_pb.js";
export * from "./gen/quarry/v1/namespace_pb.js";
export * from "./gen/quarry/v1/namespace_service_pb.js";
export * from "./gen/quarry/v1/token_pb.js";
export * from "./gen/quarry/v1/token_service_pb.js";
export * from "./gen/quarry/v1/upload_pb.js";
export * from "./gen/quarry/v1/upload_service_pb.js";
export * from "./gen/quarry/v1/version_pb.js";
