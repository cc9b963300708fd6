//! Redis backplane for rt: many nodes, one stream per channel (in progress).
