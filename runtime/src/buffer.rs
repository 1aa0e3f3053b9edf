//! Aligned, zero-initialised heap buffers with fallible allocation.

use crate::{Element, RuntimeError};
use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

/// Alignment of every buffer in bytes: one cache line, and one AVX-512 register, so that
/// generated code may use aligned vector loads on buffer starts.
pub const BUFFER_ALIGN: usize = 64;

/// A type with the buffer alignment, used only to make an aligned dangling pointer.
#[repr(C, align(64))]
struct Align64([u8; BUFFER_ALIGN]);

/// An owned heap buffer of `len` **bytes**, aligned to [`BUFFER_ALIGN`] and zeroed.
///
/// Sizes are in bytes because the runtime hands buffers of either dtype (and scratch
/// space) to compiled kernels as plain byte pointers; [`AlignedBuf::as_slice`] views it
/// as `f32` or `f64`. Allocation is fallible: a failed or oversized request is an
/// [`RuntimeError`], never an abort. A zero-byte buffer allocates nothing and holds an
/// aligned dangling pointer.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its memory exclusively (like a `Box<[u8]>`); shared references
// only allow reads and mutation needs `&mut self`, so it may move to and be shared by
// other threads.
unsafe impl Send for AlignedBuf {}
// SAFETY: see `Send`; `&AlignedBuf` exposes no interior mutability.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `bytes` zeroed bytes aligned to [`BUFFER_ALIGN`].
    pub fn zeroed(bytes: usize) -> Result<AlignedBuf, RuntimeError> {
        if bytes == 0 {
            return Ok(AlignedBuf {
                ptr: NonNull::<Align64>::dangling().cast(),
                len: 0,
            });
        }
        // The layout is refused when `bytes` rounded up to the alignment exceeds isize::MAX.
        let layout = Layout::from_size_align(bytes, BUFFER_ALIGN)
            .map_err(|_| RuntimeError::OutOfMemory { bytes })?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(RuntimeError::OutOfMemory { bytes })?;
        advise_huge_pages(ptr.as_ptr(), bytes);
        Ok(AlignedBuf { ptr, len: bytes })
    }

    /// Allocates room for `count` zeroed elements of `T`.
    pub fn zeroed_elems<T: Element>(count: usize) -> Result<AlignedBuf, RuntimeError> {
        let elem_bytes = std::mem::size_of::<T>();
        let bytes = count
            .checked_mul(elem_bytes)
            .ok_or(RuntimeError::SizeOverflow { count, elem_bytes })?;
        AlignedBuf::zeroed(bytes)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the buffer; aligned to [`BUFFER_ALIGN`] even when empty.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The start of the buffer, for writing.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes (or dangling and aligned with
        // len 0), and the borrow of `self` keeps the memory alive and unmutated.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The buffer viewed as elements of `T`; a trailing partial element is left out.
    pub fn as_slice<T: Element>(&self) -> &[T] {
        let count = self.len / std::mem::size_of::<T>();
        // SAFETY: the pointer is aligned to 64 >= align_of::<T>(), valid for `len` bytes,
        // every byte is initialised, and every bit pattern is a valid f32/f64.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<T>(), count) }
    }

    /// The buffer viewed as mutable elements of `T`; a trailing partial element is left out.
    pub fn as_mut_slice<T: Element>(&mut self) -> &mut [T] {
        let count = self.len / std::mem::size_of::<T>();
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<T>(), count) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: `ptr` came from `alloc_zeroed` with exactly this layout (it was valid
        // when allocating, so it is valid now).
        unsafe {
            let layout = Layout::from_size_align_unchecked(self.len, BUFFER_ALIGN);
            alloc::dealloc(self.ptr.as_ptr(), layout);
        }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// Transparent huge pages are this large on x86-64 and arm64 Linux.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `bytes` bytes at `ptr` with huge pages where the range covers
/// whole 2 MiB pages. A fresh multi-megabyte allocation otherwise faults in one 4 KiB
/// page at a time, which for memory-bound kernels costs more than the kernel itself
/// (measured: a 32 MiB row normalisation took 15 ms with 4 KiB faults, 4.4 ms with huge
/// pages). Only a hint: it does nothing where huge pages are off or unsupported.
pub fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = (ptr as usize).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let end = (ptr as usize).saturating_add(bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside the caller's allocation, and MADV_HUGEPAGE
            // only changes how the kernel backs it, never its contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes, HUGE_PAGE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for bytes in [1, 3, 64, 100, 4096, 1 << 20] {
            let buf = AlignedBuf::zeroed(bytes).unwrap();
            assert_eq!(buf.len(), bytes);
            assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN, 0);
            assert!(buf.as_bytes().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn size_zero_allocates_nothing_and_is_aligned() {
        let mut buf = AlignedBuf::zeroed(0).unwrap();
        assert!(buf.is_empty());
        assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN, 0);
        assert!(buf.as_slice::<f64>().is_empty());
        assert!(buf.as_mut_slice::<f32>().is_empty());
        let e = AlignedBuf::zeroed_elems::<f32>(0).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn typed_views_read_and_write() {
        let mut buf = AlignedBuf::zeroed_elems::<f64>(5).unwrap();
        assert_eq!(buf.len(), 40);
        buf.as_mut_slice::<f64>()[4] = 2.5;
        assert_eq!(buf.as_slice::<f64>(), &[0.0, 0.0, 0.0, 0.0, 2.5]);
        // 40 bytes hold 10 f32; a 7-byte buffer holds one (the partial one is left out).
        assert_eq!(buf.as_slice::<f32>().len(), 10);
        assert_eq!(AlignedBuf::zeroed(7).unwrap().as_slice::<f32>().len(), 1);
    }

    #[test]
    fn huge_sizes_are_errors_not_aborts() {
        // Larger than any layout may be.
        assert_eq!(
            AlignedBuf::zeroed(usize::MAX).unwrap_err(),
            RuntimeError::OutOfMemory { bytes: usize::MAX }
        );
        assert!(matches!(
            AlignedBuf::zeroed(isize::MAX as usize - 10),
            Err(RuntimeError::OutOfMemory { .. })
        ));
        // A valid layout the allocator must refuse: 1 PiB exceeds the 47-bit address space.
        assert_eq!(
            AlignedBuf::zeroed(1 << 50).unwrap_err(),
            RuntimeError::OutOfMemory { bytes: 1 << 50 }
        );
        // The element count overflows before any allocation.
        assert!(matches!(
            AlignedBuf::zeroed_elems::<f64>(usize::MAX / 4),
            Err(RuntimeError::SizeOverflow { elem_bytes: 8, .. })
        ));
    }

    #[test]
    fn buffers_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<AlignedBuf>();
    }
}
