//! PLACEHOLDER on the bus branch: the embedded broker.
