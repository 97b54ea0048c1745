#!/bin/sh
# writepath lab: the guest kernel's configuration, generated from tinyconfig.
#
# Usage: kconfig.sh SRCDIR OBJDIR    (writes OBJDIR/.config; needs make, gcc, flex, bison)
#
# tinyconfig is the smallest kernel that boots; every option below is turned on for a reason
# given beside it, and nothing else is, so the build stays short (a few minutes on 2 cores) and
# the path being measured is the generic one. The script checks at the end that each option
# survived olddefconfig (a dependency missing would silently drop it) and fails naming it.
#
# Each "want" line is: want OPTION VALUE "why". writepath's tests read these lines too.
set -eu
# Absolute paths: make -C resolves a relative O= against the source tree, not here.
src=$(cd "$1" && pwd)
mkdir -p "$2"
obj=$(cd "$2" && pwd)
rm -f "$obj/.config"
make -s -C "$src" O="$obj" ARCH=x86_64 tinyconfig >/dev/null

wanted=""
want() {
    wanted="$wanted $1=$2"
    case $2 in
        y) "$src/scripts/config" --file "$obj/.config" --enable "$1" ;;
        n) "$src/scripts/config" --file "$obj/.config" --disable "$1" ;;
        *) "$src/scripts/config" --file "$obj/.config" --set-val "$1" "$2" ;;
    esac
}

want 64BIT y "x86-64 guest: the 0day figures and this machine are 64-bit"
want SMP n "one CPU: nothing else runs between the markers, counts repeat exactly"
want CC_OPTIMIZE_FOR_PERFORMANCE y "-O2 as distribution kernels, not tinyconfig's -Os: path length depends on it"
want CC_OPTIMIZE_FOR_SIZE n "the other side of the -O2 choice"
want KERNEL_GZIP y "the decompressor runs under TCG at every boot: gzip unpacks far faster than xz"
want KERNEL_XZ n "the other side of the compression choice (tinyconfig picks xz)"
want HZ_100 y "fewer timer ticks fall inside the measured rounds (the lab keeps tick-free ones)"
want HZ_250 n "the other side of the tick-rate choice (tinyconfig keeps 250)"
want PRINTK y "boot messages and panics reach the log"
want TTY y "a console for init and the benchmark's result lines"
want SERIAL_8250 y "QEMU's emulated UART (ttyS0)"
want SERIAL_8250_CONSOLE y "console=ttyS0: guest output goes to QEMU's stdout"
want BLK_DEV_INITRD y "the guest's only root is the initramfs the lab builds"
want BINFMT_ELF y "to run the static benchmark and busybox"
want BINFMT_SCRIPT y "/init is a busybox shell script"
want PROC_FS y "busybox mount and the semantics replay read /proc"
want SYSFS y "busybox tools expect /sys"
want DEVTMPFS y "/dev nodes without mknod in the initramfs"
want SHMEM y "tmpfs with shmem_write_begin/end: the pwrite1 path of the 0day runs"
want TMPFS y "mountable tmpfs for the benchmark files"
want MULTIUSER y "busybox calls set*id"
want FUTEX y "static glibc (busybox-static) expects futexes"
want POSIX_TIMERS y "busybox sleep and timers"
want UNIX98_PTYS n "no terminals needed"
want MODULES n "everything built in: no module loading in the guest"
# For the semantics replay (writepath lab --semantics): the oracle's own code runs in the guest.
want BLOCK y "the block layer, for ext4 (the third filesystem the replay covers)"
want BLK_DEV y "the block-device drivers menu, for the ramdisk below"
want BLK_DEV_RAM y "brd: ext4 lives on /dev/ram0 (an image made by mkfs.ext4 on the host), no PCI or IRQ setup needed"
want BLK_DEV_RAM_COUNT 1 "one ramdisk is enough"
want BLK_DEV_RAM_SIZE 65536 "64 MiB, the size of the oracle's own ext4 loop images"
want EXT4_FS y "ext4: one of the generic filesystems whose loop the seed changes"
want FILE_LOCKING y "the oracle's scratch directories hold an flock()ed owner file"
want ADVISE_SYSCALLS y "posix_fadvise(DONTNEED) evicts the uncached files of the catalogue"
want PROC_PAGE_MONITOR y "the oracle checks page-table residency of its regions in /proc/self/pagemap"

make -s -C "$src" O="$obj" ARCH=x86_64 olddefconfig >/dev/null

status=0
for kv in $wanted; do
    opt=${kv%%=*}
    val=${kv#*=}
    case $val in
        n) grep -q "^CONFIG_$opt=" "$obj/.config" && { echo "kconfig.sh: CONFIG_$opt is set, wanted off" >&2; status=1; } ;;
        *) grep -q "^CONFIG_$opt=$val\$" "$obj/.config" || { echo "kconfig.sh: CONFIG_$opt=$val did not stick" >&2; status=1; } ;;
    esac
done
exit $status
