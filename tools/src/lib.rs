//! Build-time tools for Corral images.
//!
//! [`initramfs`] writes the cpio archives the kernel unpacks as its first
//! root filesystem, byte-for-byte reproducibly, without needing root for
//! device nodes or ownership.

pub mod debs;
pub mod initramfs;
pub mod recipe;
