//! Long and short polling transport for rt (in progress).
