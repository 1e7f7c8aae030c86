package status

import (
	"fmt"
	"io"
	"strings"
)

// maxDumps is how many dumps Print lists.
const maxDumps = 5

// Print writes the report in plain words, the verdict last.
func (r *Report) Print(w io.Writer) {
	ks := r.Kexec
	switch {
	case !ks.Supported:
		fmt.Fprintf(w, "reservation:  none: %s\n", "this kernel has no crash dump support")
	case ks.Reserved == 0:
		fmt.Fprintln(w, `reservation:  none: add crashkernel=<size> to the kernel command line and reboot ("ukdump estimate" gives the size)`)
	default:
		fmt.Fprintf(w, "reservation:  %d MiB\n", ks.Reserved>>20)
	}
	r.printLoaded(w)
	r.printTarget(w)
	r.printKeys(w)
	for _, err := range r.Errs {
		fmt.Fprintf(w, "warning: %v\n", err)
	}
	if p := r.Problems(); len(p) > 0 {
		fmt.Fprintln(w, "NOT READY: a crash now would give no dump:")
		for _, s := range p {
			fmt.Fprintf(w, "  - %s\n", s)
		}
		return
	}
	st := r.State
	fmt.Fprintf(w, "ready: a crash now writes a dump to %s on %s, then takes final_action %s\n", st.Path, st.Target, st.FinalAction)
}

func (r *Report) printLoaded(w io.Writer) {
	st := r.State
	switch {
	case !r.Kexec.Supported:
		return
	case !r.Kexec.Loaded:
		fmt.Fprintln(w, "crash kernel: not loaded")
		return
	case st == nil:
		fmt.Fprintln(w, "crash kernel: loaded, but not by ukdump load (it left no record)")
		return
	}
	release := st.Release
	if release == "" {
		release = "release unknown"
	}
	fmt.Fprintf(w, "crash kernel: loaded: %s (%s), at %s, initramfs %d KiB\n",
		release, st.Kernel, st.LoadedAt.Format("2006-01-02 15:04:05 UTC"), st.InitramfsSize>>10)
	present := "present"
	if !r.LoadedTargetPresent {
		present = "NOT FOUND on this machine's block devices"
	}
	fmt.Fprintf(w, "  on a crash: dump to %s on %s (%s), then %s; %s if the dump fails\n",
		st.Path, st.Target, present, st.FinalAction, st.FailureAction)
	for _, v := range st.Volumes {
		fmt.Fprintf(w, "  LUKS volume %s (UUID %s): key handed over (%s transport, from %s)\n", v.Name, v.UUID, v.Transport, v.Source)
	}
	for _, l := range st.LVM {
		fmt.Fprintf(w, "  LVM volume %s/%s: activated from the metadata on its PVs (seqno %d at load; moved since: refused, run ukdump reload)\n", l.VG, l.LV, l.Seqno)
	}
}

func (r *Report) printTarget(w io.Writer) {
	t := r.Target
	if t == nil {
		fmt.Fprintf(w, "target:       not found: %v\n", r.TargetErr)
		return
	}
	var points []string
	for _, m := range r.Mounts {
		points = append(points, m.Point)
	}
	mounted := "not mounted"
	if len(points) > 0 {
		mounted = "mounted on " + strings.Join(points, ", ")
	}
	fmt.Fprintf(w, "target:       %s: present, %s\n", t, mounted)
	if st := r.State; st != nil && r.Kexec.Loaded && st.TargetUUID != "" && (st.TargetUUID != t.FS.UUID || st.Path != t.Path) {
		fmt.Fprintf(w, "  ukdump.conf now says %s on UUID=%s; the loaded crash kernel has %s on UUID=%s: run ukdump reload\n",
			t.Path, t.FS.UUID, st.Path, st.TargetUUID)
	}
	switch {
	case r.DumpDir == "" && len(points) == 0:
		fmt.Fprintf(w, "dumps:        in %s on the target, which is not mounted here: mount it to see them\n", t.Path)
		return
	case r.DumpDir == "":
		fmt.Fprintf(w, "dumps:        in %s on the target, which no mount here shows\n", t.Path)
		return
	case r.DumpsErr != nil:
		fmt.Fprintf(w, "dumps:        %s: %v\n", r.DumpDir, r.DumpsErr)
		return
	case len(r.Dumps) == 0:
		fmt.Fprintf(w, "dumps:        %s (%s on the target): none yet\n", r.DumpDir, t.Path)
		return
	}
	fmt.Fprintf(w, "dumps:        %s (%s on the target), newest first:\n", r.DumpDir, t.Path)
	for i, d := range r.Dumps {
		if i == maxDumps {
			fmt.Fprintf(w, "  and %d older\n", len(r.Dumps)-maxDumps)
			break
		}
		fmt.Fprintf(w, "  %s  %.1f MiB  %s\n", d.Name, float64(d.Size)/(1<<20), d.State())
	}
}
