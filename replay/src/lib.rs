//! ft-replay
