//! Support code shared by the zt examples.
