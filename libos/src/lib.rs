//! ft-libos
