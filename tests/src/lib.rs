//! Shared support for rt end-to-end tests.
