//! The policy layer: pure functions from files handed to it to a [`image::MapImage`].
pub mod image;
