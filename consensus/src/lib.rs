//! ft-consensus
