// Package vmcore reads and filters the memory image of a crashed Linux
// kernel: the ELF core exported by the crash kernel as /proc/vmcore (or a copy
// of it in a file).
//
// It is the reading and filtering half of a makedumpfile-class core
// collector, for x86_64 and arm64 kernels (the machine is the ELF header's,
// whatever machine runs this code):
//
//   - [Core] parses the ELF64 ET_CORE headers: PT_LOAD segments (physical
//     memory), the PT_NOTE bytes, the number of CPUs (NT_PRSTATUS notes) and
//     the VMCOREINFO note, and reads physical memory page by page.
//   - [VMCOREINFO] gives typed access to the kernel's VMCOREINFO text.
//   - [Translator] translates kernel virtual addresses with the dead kernel's
//     page tables: x86_64 (4- or 5-level, large pages, phys_base, sme_mask)
//     or arm64 (4, 16 or 64 KiB granules, 2 to 5 levels, blocks, 52-bit
//     physical addresses with 64 KiB pages and with LPA2 on 4 and 16 KiB).
//   - [MemMap] locates the array of struct page (SPARSEMEM_VMEMMAP) and reads
//     struct pages in batches.
//   - [Classifier] decides, from struct pages, which page frames a dump level
//     excludes (cache, user, free, hwpoison, offline, unaccepted pages), for
//     the struct page layouts of Linux 6.1 to 7.x.
//   - [Scanner] walks all page frames in chunks and yields the two kdump
//     bitmaps (RAM and dumpable) per chunk, in bounded memory.
//
// Zero pages (dump level bit 1) are found on page contents by the caller,
// while it reads page data (the diskdump writers, with internal/zeropage).
//
// The kernel log of the dead kernel is read by the subpackage printk.
//
// Nothing in this package panics on malformed input: every structure read
// from the core is bounds-checked, and errors name what was being read and
// wrap a [FormatError], so that callers can tell malformed input from I/O
// errors with errors.As.
package vmcore
