//! The management-backend emulator over real HTTP: every operation of the ARM surface,
//! the errors, persistence across restarts (and a kill -9), faults, staging and sign-in.

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
