//! # system-tests: tests that cross programs
//!
//! The tests in `tests/` run the workspace's programs as real processes against a private
//! `redis-server`: `system.rs` starts `inventario-service`, `inventario-worker` and
//! `monitor-service` together and breaks Redis, the worker and the network under them;
//! `crash.rs` kills `demo-worker` processes with SIGKILL in the middle of their work and counts
//! what at-least-once delivery cost; `redis_full.rs` fills Redis to its `maxmemory` under the
//! service and two workers and frees it again. Each crate's own tests stay in that crate.
