//! The management-backend emulator over real HTTP: every operation of the ARM surface,
//! the errors, persistence across restarts (and a kill -9), faults, staging, sign-in, and
//! who may call (Entra ID tokens for the world's identities; ARM's 401, 403 and 404).

mod support;

mod bad_input;
mod budget;
mod durability;
mod faults;
mod machines;
mod operations;
mod roles;
mod signin;
mod snapshot;
mod staging;
mod tenants;
