/** Protocol v1 in the page: the same bytes as protocol/ in Python. */
export * from "./bytes.js";
export * from "./canonical.js";
export * from "./envelopes.js";
export * from "./keys.js";
export * from "./primitives.js";
export * from "./stream.js";
export * from "./secrets.js";
export * from "./enrolment.js";
export * from "./labels.js";
export * from "./merkle.js";
export * from "./checkpoint.js";
export * from "./grants.js";
export * from "./coalition.js";
