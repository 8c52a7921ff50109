//! The daemon's global allocator: the system allocator, except for small over-aligned blocks.
//!
//! tokio aligns every task and every socket registration to a cache line (128 bytes on x86_64,
//! 32 on most 32-bit targets), two such blocks per connection. glibc serves an aligned request by
//! allocating `size + alignment` and freeing the slack on both sides, and that slack mostly stays
//! unused: about 250 bytes per idle connection on x86_64, a fifth of what one costs. Here those
//! blocks come from slabs instead: 64 KiB chunks cut into blocks of one size class, aligned by
//! construction and handed out front to back (untouched pages stay out of the resident set),
//! with freed blocks kept on a per-class free list for the next connection.
//!
//! Memory in the slabs is reused but never handed back to the system, like glibc's own arenas
//! after a burst; it is bounded by the peak number of connections.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// Blocks are a multiple of this size and aligned to it; it is the largest alignment served.
const GRANULE: usize = 128;
/// Requests larger than this go to the system allocator.
const MAX_BLOCK: usize = 1024;
const CLASSES: usize = MAX_BLOCK / GRANULE;
/// Bytes taken from the system at a time for one size class.
const CHUNK: usize = 64 * 1024;

/// See the module documentation; install with `#[global_allocator]`.
pub struct SlabAlloc {
    classes: [Mutex<FreeList>; CLASSES],
}

/// One size class: an intrusive list of freed blocks (each one's first word points to the next)
/// and the unused rest of the newest chunk.
struct FreeList {
    head: *mut u8,
    /// Next never-used block of the current chunk, and the chunk's end.
    fresh: *mut u8,
    end: *mut u8,
}

// SAFETY: the list is only reached through its mutex, and the blocks it links are owned by it.
unsafe impl Send for FreeList {}

impl SlabAlloc {
    /// An allocator with empty slabs; chunks are taken from the system on first use.
    pub const fn new() -> Self {
        SlabAlloc {
            classes: [const {
                Mutex::new(FreeList {
                    head: ptr::null_mut(),
                    fresh: ptr::null_mut(),
                    end: ptr::null_mut(),
                })
            }; CLASSES],
        }
    }
}

impl Default for SlabAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class serving `layout`, if it is a small over-aligned request.
fn class_of(layout: Layout) -> Option<usize> {
    let over_aligned = layout.align() > 16 && layout.align() <= GRANULE;
    (over_aligned && layout.size() <= MAX_BLOCK).then(|| layout.size().max(1).div_ceil(GRANULE) - 1)
}

impl FreeList {
    /// Takes a block of `block` bytes: a freed one, else the next fresh one, cutting a new
    /// chunk from the system when the current one is used up.
    ///
    /// # Safety
    /// `block` must be the class's block size, the same on every call for this list.
    unsafe fn pop(&mut self, block: usize) -> *mut u8 {
        if !self.head.is_null() {
            let head = self.head;
            // SAFETY: `head` is a free block whose first word is the next free block.
            self.head = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        if (self.end as usize) - (self.fresh as usize) < block {
            // SAFETY: CHUNK and GRANULE are non-zero powers of two.
            let layout = unsafe { Layout::from_size_align_unchecked(CHUNK, GRANULE) };
            // SAFETY: the layout has a non-zero size.
            let chunk = unsafe { System.alloc(layout) };
            if chunk.is_null() {
                return chunk;
            }
            self.fresh = chunk;
            // SAFETY: one past the end of the chunk just allocated.
            self.end = unsafe { chunk.add(CHUNK) };
        }
        let p = self.fresh;
        // SAFETY: at least `block` bytes are left before `end`.
        self.fresh = unsafe { p.add(block) };
        p
    }

    /// Returns a block to the list.
    ///
    /// # Safety
    /// `p` must be a block of this list's class that nobody uses any more.
    unsafe fn push(&mut self, p: *mut u8) {
        // SAFETY: the block is at least GRANULE bytes and aligned for a pointer.
        unsafe { p.cast::<*mut u8>().write(self.head) };
        self.head = p;
    }
}

// SAFETY: slab blocks are aligned to GRANULE (chunks are, and blocks are multiples of it) and
// at least `layout.size()` long; each block is handed out once until it is freed; everything
// else is the system allocator's.
unsafe impl GlobalAlloc for SlabAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(c) => {
                let mut list = self.classes[c].lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: the block size is fixed by the class.
                unsafe { list.pop((c + 1) * GRANULE) }
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(c) => {
                let mut list = self.classes[c].lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: `p` came from `alloc` with the same layout, hence from this class.
                unsafe { list.push(p) }
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.dealloc(p, layout) },
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if class_of(layout).is_none() && class_of(new_layout).is_none() {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: as `GlobalAlloc::realloc`'s default: allocate, copy the overlap, free.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_over_aligned_blocks_come_from_slabs_and_are_reused() {
        let a = SlabAlloc::new();
        let layout = Layout::from_size_align(384, 128).unwrap();
        let mut blocks = Vec::new();
        // More than one chunk's worth, so a second chunk is cut.
        for i in 0..400 {
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % 128, 0, "block {i} misaligned");
            unsafe { p.write_bytes(i as u8, 384) };
            blocks.push(p);
        }
        // No two live blocks overlap: each still holds its own fill byte.
        for (i, p) in blocks.iter().enumerate() {
            let bytes = unsafe { std::slice::from_raw_parts(*p, 384) };
            assert!(
                bytes.iter().all(|b| *b == i as u8),
                "block {i} was overwritten"
            );
        }
        let freed = blocks.pop().unwrap();
        unsafe { a.dealloc(freed, layout) };
        assert_eq!(
            unsafe { a.alloc(layout) },
            freed,
            "a freed block is reused first"
        );
    }

    #[test]
    fn classes_cover_what_tokio_asks_for_and_nothing_else() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class_of(l(384, 128)), Some(2));
        assert_eq!(class_of(l(256, 128)), Some(1));
        assert_eq!(class_of(l(96, 32)), Some(0));
        assert_eq!(class_of(l(1024, 128)), Some(7));
        assert_eq!(class_of(l(1025, 128)), None);
        assert_eq!(class_of(l(384, 16)), None);
        assert_eq!(class_of(l(384, 256)), None);
    }

    #[test]
    fn realloc_moves_between_slabs_and_the_system() {
        let a = SlabAlloc::new();
        let small = Layout::from_size_align(200, 64).unwrap();
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(7, 200);
            let q = a.realloc(p, small, 4000);
            assert_eq!(q as usize % 64, 0);
            assert!(std::slice::from_raw_parts(q, 200).iter().all(|b| *b == 7));
            let big = Layout::from_size_align(4000, 64).unwrap();
            let r = a.realloc(q, big, 100);
            assert_eq!(r as usize % 64, 0);
            assert!(std::slice::from_raw_parts(r, 100).iter().all(|b| *b == 7));
            a.dealloc(r, Layout::from_size_align(100, 64).unwrap());
        }
    }

    #[test]
    fn threads_share_the_slabs_safely() {
        static A: SlabAlloc = SlabAlloc::new();
        let layout = Layout::from_size_align(256, 128).unwrap();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let ps: Vec<_> = (0..50)
                            .map(|_| {
                                let p = unsafe { A.alloc(layout) };
                                unsafe { p.write_bytes(t, 256) };
                                p as usize
                            })
                            .collect();
                        for p in ps {
                            let p = p as *mut u8;
                            let ok = unsafe { std::slice::from_raw_parts(p, 256) }
                                .iter()
                                .all(|b| *b == t);
                            assert!(ok, "a block was shared between threads");
                            unsafe { A.dealloc(p, layout) };
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
