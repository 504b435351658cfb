//! Reading a running daemon's introspection into a cluster file.
