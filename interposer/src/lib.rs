//! ft-interposer
