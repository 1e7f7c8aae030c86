package e2e

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// faultDisk serves a raw image to QEMU over NBD (a Unix socket) and can
// make it misbehave on command: fail writes with EIO, stop answering, or
// lose power. QEMU's own fault injection (blkdebug) is configured once, at
// start, so it cannot tell the first kernel's writes from the crash
// kernel's; the test switches this disk when the console shows the crash
// kernel at the point the fault belongs to.
//
// It models a disk with a volatile write cache: a write reaches the image
// at once (reads see it), but it is durable only after the next flush.
// Power loss (PowerLoss) undoes every write since the last flush, newest
// first, which is what a disk that lost its whole cache leaves; the guest
// sees FLUSH support (NBD_FLAG_SEND_FLUSH), as on a real disk, so a
// filesystem that orders its writes with flushes survives it.
type faultDisk struct {
	Sock string
	f    *os.File
	size int64
	ln   net.Listener

	mu         sync.Mutex
	conn       net.Conn
	undo       []undoRecord // writes since the last flush, oldest first
	failAfter  int64        // bytes of writes still allowed; -1: no limit
	failed     int          // requests answered with EIO
	hung       bool
	hungSince  chan struct{} // closed when the first request is left unanswered
	firstFail  chan time.Time
	wroteTo    int64          // AfterWrites: the written total that fires it
	wrote      chan time.Time // nil when not armed
	release    chan struct{}
	dead       bool
	written    int64
	flushes    int
	lostWrites int
}

type undoRecord struct {
	off int64
	old []byte
}

// NBD protocol constants (the fixed newstyle handshake and simple replies).
const (
	nbdMagic         = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic      = 0x49484156454f5054 // "IHAVEOPT"
	nbdRepMagic      = 0x3e889045565a9
	nbdReqMagic      = 0x25609513
	nbdSimpleReply   = 0x67446698
	nbdOptExportName = 1
	nbdOptAbort      = 2
	nbdOptInfo       = 6
	nbdOptGo         = 7
	nbdRepAck        = 1
	nbdRepInfo       = 3
	nbdRepErrUnsup   = 1<<31 + 1
	nbdFlagHasFlags  = 1
	nbdFlagSendFlush = 4
	nbdCmdRead       = 0
	nbdCmdWrite      = 1
	nbdCmdDisc       = 2
	nbdCmdFlush      = 3
)

func newFaultDisk(image, sock string) (*faultDisk, error) {
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Close()
		return nil, err
	}
	d := &faultDisk{Sock: sock, f: f, size: st.Size(), ln: ln, failAfter: -1,
		hungSince: make(chan struct{}), release: make(chan struct{}), firstFail: make(chan time.Time, 1)}
	go d.serve()
	return d, nil
}

// DriveArg is the -drive option that attaches the disk as a virtio disk.
// cache=writeback passes the guest's flushes on as NBD flushes.
func (d *faultDisk) DriveArg() string {
	return "file.driver=nbd,file.server.type=unix,file.server.path=" + escapeComma(d.Sock) + ",format=raw,if=virtio,cache=writeback"
}

func escapeComma(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// FailWritesAfter lets n more bytes of writes through, then answers every
// write and flush with EIO (reads still work, as on a disk whose write
// path died).
func (d *faultDisk) FailWritesAfter(n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failAfter = n
}

// Hang stops answering: every request from now on stays in flight until
// Release, as with a disk that stopped responding.
func (d *faultDisk) Hang() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hung = true
}

// Release ends a Hang by closing the connection, so that QEMU fails the
// requests in flight and can exit: it drains every disk before exiting,
// which would otherwise wait for ever.
func (d *faultDisk) Release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.release:
	default:
		close(d.release)
	}
	if d.conn != nil {
		d.conn.Close()
	}
}

// PowerLoss undoes the writes since the last flush and stops serving.
func (d *faultDisk) PowerLoss() (lost int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	if d.conn != nil {
		d.conn.Close()
	}
	for i := len(d.undo) - 1; i >= 0; i-- {
		if _, err := d.f.WriteAt(d.undo[i].old, d.undo[i].off); err != nil {
			return 0, err
		}
	}
	lost = len(d.undo)
	d.lostWrites = lost
	d.undo = nil
	return lost, d.f.Sync()
}

// Stats says what the disk saw: bytes written, flushes, requests failed.
func (d *faultDisk) Stats() (written int64, flushes, failed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.written, d.flushes, d.failed
}

// AfterWrites returns a channel that receives the time once n more bytes
// of writes than so far have reached the disk: a point in the guest's
// work that does not move with the host's speed, as a delay would.
func (d *faultDisk) AfterWrites(n int64) <-chan time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wroteTo, d.wrote = d.written+n, make(chan time.Time, 1)
	return d.wrote
}

// FirstFailure receives the time of the first request answered with EIO.
func (d *faultDisk) FirstFailure() <-chan time.Time { return d.firstFail }

func (d *faultDisk) failOne() {
	if d.failed == 0 {
		d.firstFail <- time.Now()
	}
	d.failed++
}

// HungRequest is closed when the first request is left unanswered.
func (d *faultDisk) HungRequest() <-chan struct{} { return d.hungSince }

func (d *faultDisk) Close() {
	d.Release()
	d.ln.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.f.Close()
}

func (d *faultDisk) serve() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		if d.dead {
			d.mu.Unlock()
			c.Close()
			continue
		}
		d.conn = c
		d.mu.Unlock()
		d.handle(c)
		c.Close()
	}
}

func (d *faultDisk) handle(c net.Conn) {
	be := binary.BigEndian
	if err := d.handshake(c); err != nil {
		return
	}
	var hdr [28]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		if be.Uint32(hdr[0:]) != nbdReqMagic {
			return
		}
		typ := be.Uint16(hdr[6:])
		handle := hdr[8:16]
		off := int64(be.Uint64(hdr[16:]))
		n := int64(be.Uint32(hdr[24:]))
		var data []byte
		if typ == nbdCmdWrite {
			data = make([]byte, n)
			if _, err := io.ReadFull(c, data); err != nil {
				return
			}
		}
		if typ == nbdCmdDisc {
			return
		}
		d.mu.Lock()
		hung := d.hung
		d.mu.Unlock()
		if hung {
			select {
			case <-d.hungSince:
			default:
				close(d.hungSince)
			}
			<-d.release
			return
		}
		errno, payload := d.do(typ, off, n, data)
		reply := make([]byte, 16, 16+len(payload))
		be.PutUint32(reply[0:], nbdSimpleReply)
		be.PutUint32(reply[4:], errno)
		copy(reply[8:], handle)
		reply = append(reply, payload...)
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

// do carries out one request and returns the NBD error (an errno) and the
// data of a read.
func (d *faultDisk) do(typ uint16, off, n int64, data []byte) (uint32, []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || n < 0 || off+n > d.size {
		return uint32(syscall.EINVAL), nil
	}
	switch typ {
	case nbdCmdRead:
		b := make([]byte, n)
		if _, err := d.f.ReadAt(b, off); err != nil {
			return uint32(syscall.EIO), nil
		}
		return 0, b
	case nbdCmdWrite:
		if d.failAfter >= 0 {
			if d.failAfter < n {
				d.failAfter = 0
				d.failOne()
				return uint32(syscall.EIO), nil
			}
			d.failAfter -= n
		}
		old := make([]byte, n)
		if _, err := d.f.ReadAt(old, off); err != nil {
			return uint32(syscall.EIO), nil
		}
		if _, err := d.f.WriteAt(data, off); err != nil {
			return uint32(syscall.EIO), nil
		}
		d.undo = append(d.undo, undoRecord{off, old})
		d.written += n
		if d.wrote != nil && d.written >= d.wroteTo {
			d.wrote <- time.Now()
			d.wrote = nil
		}
		return 0, nil
	case nbdCmdFlush:
		if d.failAfter == 0 {
			d.failOne()
			return uint32(syscall.EIO), nil
		}
		d.undo = nil
		d.flushes++
		return 0, nil
	}
	return uint32(syscall.EINVAL), nil
}

// handshake is the server side of the fixed newstyle negotiation. It
// declines every option but the export itself (structured replies, meta
// contexts), which leaves QEMU with simple replies.
func (d *faultDisk) handshake(c net.Conn) error {
	be := binary.BigEndian
	var hello [18]byte
	be.PutUint64(hello[0:], nbdMagic)
	be.PutUint64(hello[8:], nbdOptMagic)
	be.PutUint16(hello[16:], 1|2) // FIXED_NEWSTYLE | NO_ZEROES
	if _, err := c.Write(hello[:]); err != nil {
		return err
	}
	var cflags [4]byte
	if _, err := io.ReadFull(c, cflags[:]); err != nil {
		return err
	}
	noZeroes := be.Uint32(cflags[:])&2 != 0
	exportInfo := func() []byte {
		b := make([]byte, 10)
		be.PutUint64(b[0:], uint64(d.size))
		be.PutUint16(b[8:], nbdFlagHasFlags|nbdFlagSendFlush)
		return b
	}
	reply := func(opt, typ uint32, data []byte) error {
		b := make([]byte, 20, 20+len(data))
		be.PutUint64(b[0:], nbdRepMagic)
		be.PutUint32(b[8:], opt)
		be.PutUint32(b[12:], typ)
		be.PutUint32(b[16:], uint32(len(data)))
		_, err := c.Write(append(b, data...))
		return err
	}
	for {
		var h [16]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return err
		}
		if be.Uint64(h[0:]) != nbdOptMagic {
			return errors.New("nbd: bad option magic")
		}
		opt, n := be.Uint32(h[8:]), be.Uint32(h[12:])
		if n > 1<<16 {
			return errors.New("nbd: option too long")
		}
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return err
		}
		switch opt {
		case nbdOptExportName:
			b := exportInfo()
			if !noZeroes {
				b = append(b, make([]byte, 124)...)
			}
			_, err := c.Write(b)
			return err
		case nbdOptGo, nbdOptInfo:
			info := append([]byte{0, 0}, exportInfo()...) // NBD_INFO_EXPORT
			if err := reply(opt, nbdRepInfo, info); err != nil {
				return err
			}
			if err := reply(opt, nbdRepAck, nil); err != nil {
				return err
			}
			if opt == nbdOptGo {
				return nil
			}
		case nbdOptAbort:
			reply(opt, nbdRepAck, nil)
			return errors.New("nbd: client aborted")
		default:
			if err := reply(opt, nbdRepErrUnsup, nil); err != nil {
				return err
			}
		}
	}
}
