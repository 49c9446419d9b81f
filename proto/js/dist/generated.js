/* Generated from schema/protocol.schema.json (the Rust `proto` crate) by
 * scripts/gen-types.mjs. Do not edit: run `npm run gen`. */
export {};
