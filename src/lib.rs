//! Canopy server
