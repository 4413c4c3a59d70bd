//! Real loopback servers with fault injection, for testing moorline and code built on it.
