//! zt-tonic
