#!/bin/bash
# ipvs-vm.sh - run a command against a real IPVS kernel: Debian's own kernel under QEMU.
#
#   .ci/ipvs-vm.sh --setup          install qemu/busybox/kmod/ipvsadm and unpack the guest kernel
#                                   (idempotent: a second run only checks)
#   .ci/ipvs-vm.sh 'shell command'  boot a throw-away guest, run the command as root in the
#   .ci/ipvs-vm.sh prog arg...      caller's cwd and environment, exit with its status
#
# The guest sees the host's / read-only (9p) under a tmpfs overlay, so writes vanish at exit;
# its only interface is lo. Its output (stdout and stderr together) streams to our stdout.
# Exit status: the command's; 124 when the guest ran out of time; 125 when the VM failed.
#
# Environment: IPVS_VM_CACHE (kernel cache, default /var/cache/vrrpd-ipvs-vm), IPVS_VM_TIMEOUT
# (seconds, default 300), IPVS_VM_MEM (MiB, 1024), IPVS_VM_CPUS (2), IPVS_VM_ACCEL (tcg|kvm,
# default tcg: nested KVM often cannot boot a stock kernel), IPVS_VM_VERBOSE=1 (print the console).
set -uo pipefail

CACHE=${IPVS_VM_CACHE:-/var/cache/vrrpd-ipvs-vm}
TIMEOUT=${IPVS_VM_TIMEOUT:-300}
MEM=${IPVS_VM_MEM:-1024}
CPUS=${IPVS_VM_CPUS:-2}
ACCEL=${IPVS_VM_ACCEL:-tcg}
PKGS=(qemu-system-x86 busybox-static kmod ipvsadm iproute2 xz-utils)
export PATH=$PATH:/usr/sbin:/sbin

die() { echo "ipvs-vm.sh: $*" >&2; exit 125; }
note() { echo "ipvs-vm.sh: $*" >&2; }

# The newest unpacked kernel version in the cache that has ip_vs.
kernel_version() {
  local d v best=
  for d in "$CACHE"/kernel-*/; do
    v=${d%/}; v=${v##*/kernel-}
    [ -f "$d/boot/vmlinuz-$v" ] && [ -f "$d/lib/modules/$v/modules.dep" ] &&
      [ -e "$d/lib/modules/$v/kernel/net/netfilter/ipvs/ip_vs.ko" ] || continue
    best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -1)
  done
  printf '%s' "$best"
}

# The uncompressed kernel inside a bzImage: QEMU boots it through PVH, which spares the
# guest seconds of xz decompression under TCG.
extract_vmlinux() {
  local bz=$1 out=$2 sects off len start
  sects=$(od -An -tu1 -j$((0x1f1)) -N1 "$bz" | tr -d ' ')
  [ "$sects" = 0 ] && sects=4
  off=$(od -An -tu4 -j$((0x248)) -N4 "$bz" | tr -d ' ')
  len=$(od -An -tu4 -j$((0x24c)) -N4 "$bz" | tr -d ' ')
  start=$(( (sects + 1) * 512 + off ))
  [ "$(od -An -tx1 -j"$start" -N4 "$bz" | tr -d ' ')" = fd377a58 ] || return 1
  tail -c +$((start + 1)) "$bz" | head -c "$len" | xz -dc > "$out.tmp" 2>/dev/null
  if [ "$(od -An -tx1 -N4 "$out.tmp" | tr -d ' ')" = 7f454c46 ]; then mv "$out.tmp" "$out"
  else rm -f "$out.tmp"; return 1; fi
}

setup() {
  [ "$(id -u)" = 0 ] || die "--setup must run as root"
  export DEBIAN_FRONTEND=noninteractive
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    note "installing ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
      die "apt-get install failed"
  fi
  local cur; cur=$(kernel_version)
  if [ -n "$cur" ]; then
    [ -f "$CACHE/kernel-$cur/boot/vmlinux-$cur" ] ||
      extract_vmlinux "$CACHE/kernel-$cur/boot/vmlinuz-$cur" "$CACHE/kernel-$cur/boot/vmlinux-$cur"
    note "guest kernel ready: $CACHE/kernel-$cur"
    return 0
  fi
  # The versioned package behind linux-image-amd64, downloaded and unpacked, never installed
  # (installing would pull initramfs-tools, udev and systemd into the host).
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
  [ -n "$pkg" ] || die "cannot resolve the package behind linux-image-amd64"
  local ver=${pkg#linux-image-}
  mkdir -p "$CACHE" && tmp=$(mktemp -d "$CACHE/.dl.XXXXXX") || die "cannot create $CACHE"
  trap 'rm -rf "${tmp:-}"' EXIT
  note "downloading $pkg"
  (cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2) || die "apt-get download $pkg failed"
  dpkg-deb -x "$tmp"/*.deb "$tmp/root" && rm -f "$tmp"/*.deb || die "unpacking $pkg failed"
  if [ ! -d "$tmp/root/lib/modules/$ver" ] && [ -d "$tmp/root/usr/lib/modules/$ver" ]; then
    mkdir -p "$tmp/root/lib" && mv "$tmp/root/usr/lib/modules" "$tmp/root/lib/modules"
  fi
  depmod -b "$tmp/root" "$ver" || die "depmod failed"
  extract_vmlinux "$tmp/root/boot/vmlinuz-$ver" "$tmp/root/boot/vmlinux-$ver" || note "booting the bzImage (slower)"
  mv "$tmp/root" "$CACHE/kernel-$ver"
  note "guest kernel ready: $CACHE/kernel-$ver"
}

if [ "${1:-}" = --setup ]; then setup; exit $?; fi
[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 125; }
[ "$(id -u)" = 0 ] || die "must run as root (QEMU shares the whole host / with the guest)"
QEMU=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing: run $0 --setup"
BUSYBOX=/bin/busybox
{ LC_ALL=C ldd "$BUSYBOX" 2>&1 || true; } | grep -q 'not a dynamic' || die "no static busybox: run $0 --setup"
KVER=$(kernel_version)
[ -n "$KVER" ] || die "no guest kernel in $CACHE: run $0 --setup"
KDIR=$CACHE/kernel-$KVER
KIMAGE=$KDIR/boot/vmlinuz-$KVER
[ -f "$KDIR/boot/vmlinux-$KVER" ] && KIMAGE=$KDIR/boot/vmlinux-$KVER

# Stage 1 (busybox, in the initramfs): drivers, host / over 9p under a tmpfs overlay, switch_root.
read -r -d '' STAGE1 <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "ipvs-vm: FAILED: $*"; poweroff -f; }
while read -r m; do insmod "/mods/$m" || fail "insmod $m"; done < /mods/order
for w in $(cat /proc/cmdline); do case "$w" in ipvsvm.job=*) JOB=${w#ipvsvm.job=} ;; esac; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose hostroot /lower || fail "9p"
mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail overlay
N=/newroot
read -r KMOD < "$N$JOB/moddir"
mkdir -p "$N/lib/modules/$(uname -r)" && mount -o bind "/lower$KMOD" "$N/lib/modules/$(uname -r)"
for d in dev proc sys; do mount --move /$d "$N/$d"; done
mount -t tmpfs -o mode=0755 tmpfs "$N/run"
mkdir -p "$N/run/vm" "$N/dev/pts" "$N/dev/shm"
mount -t devpts devpts "$N/dev/pts"; mount -t tmpfs tmpfs "$N/dev/shm"
n=0
while ! { [ -L "$N/run/vm/ipvsvm.status" ] && [ -L "$N/run/vm/ipvsvm.out" ]; } && [ $n -lt 500 ]; do
  for p in "$N"/sys/class/virtio-ports/*; do
    [ -f "$p/name" ] && read -r name < "$p/name" && ln -sf "/dev/${p##*/}" "$N/run/vm/$name"
  done
  usleep 10000; n=$((n + 1))
done
echo "$JOB" > "$N/run/vm/job"
cp /stage2 "$N/run/vm/stage2"
exec switch_root "$N" /bin/bash /run/vm/stage2
EOF
# Stage 2 (the host's bash as PID 1): run the job, report its status, power off.
read -r -d '' STAGE2 <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
hostname ipvs-vm; ip link set lo up
read -r __JOB < /run/vm/job
( . "$__JOB/job.sh" ) </dev/null >/run/vm/ipvsvm.out 2>&1
echo $? > /run/vm/ipvsvm.status
/bin/busybox poweroff -f
EOF

MODS=$(modprobe -d "$KDIR/" -S "$KVER" --show-depends -a virtio_mmio virtio_console 9pnet_virtio 9p overlay |
       awk '$1 == "insmod" && !seen[$2]++ {print $2}') || die "cannot resolve initramfs modules"
KEY=$(printf '%s\n' "$KVER" "$STAGE1" "$STAGE2" "$MODS" | sha1sum | cut -c1-12)
INITRD=$CACHE/initramfs-$KEY.cpio
if [ ! -s "$INITRD" ]; then
  stage=$(mktemp -d) || die mktemp
  (
    set -e; cd "$stage"; mkdir -p bin dev proc sys lower rw newroot mods
    cp "$BUSYBOX" bin/busybox
    i=0; for m in $MODS; do i=$((i + 1)); b=$(printf '%02d-%s' $i "${m##*/}"); cp "$m" "mods/$b"; echo "$b" >> mods/order; done
    printf '%s\n' "$STAGE1" > init; printf '%s\n' "$STAGE2" > stage2; chmod 755 init
    find . -mindepth 1 | LC_ALL=C sort | bin/busybox cpio -o -H newc 2>/dev/null > "$INITRD.$$"
  ) && mv "$INITRD.$$" "$INITRD" || { rm -rf "$stage" "$INITRD.$$"; die "building the initramfs failed"; }
  rm -rf "$stage"
  for f in "$CACHE"/initramfs-*.cpio; do [ "$f" = "$INITRD" ] || rm -f "$f"; done
fi

JOB=$(mktemp -d /tmp/vrrpd-ipvs-vm.XXXXXX) || die mktemp
QPID=
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; rm -rf "$JOB"; }
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
(cd "$KDIR/lib/modules/$KVER" && pwd -P) > "$JOB/moddir"
{
  while IFS= read -r n; do
    case "$n" in PWD|OLDPWD|SHLVL|_|BASHOPTS|SHELLOPTS|BASH_*|IPVS_VM_*) continue ;; esac
    [[ "$n" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && printf 'export %s=%q\n' "$n" "${!n}"
  done < <(compgen -e)
  printf 'cd -- %q || exit 125\n' "$PWD"
  if [ $# -eq 1 ]; then printf '%s\n' "$1"; else printf 'exec'; printf ' %q' "$@"; printf '\n'; fi
} > "$JOB/job.sh"
mkfifo "$JOB/out.fifo"
cat "$JOB/out.fifo" &
RELAY=$!
APPEND="console=ttyS0 quiet loglevel=4 panic=-1 pci=off 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd rdinit=/init ipvsvm.job=$JOB"
if [ "$ACCEL" = tcg ]; then
  # The TCG guest's TSC follows the host's; telling the guest its rate spares a PIT calibration
  # that sometimes fails on microvm (no HPET) and hangs the boot.
  APPEND="$APPEND tsc=reliable"
  grep -qw tsc_known_freq /proc/cpuinfo &&
    APPEND="$APPEND tsc_early_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000 + 0.5; exit}' /proc/cpuinfo)"
fi
timeout -k 5 "$TIMEOUT" "$QEMU" -name vrrpd-ipvs-vm -nodefaults -no-user-config -no-reboot \
  -display none -monitor none -accel "$ACCEL" -cpu max -M microvm,pit=on,pic=on,rtc=on \
  -m "$MEM" -smp "$CPUS" -kernel "$KIMAGE" -initrd "$INITRD" -append "$APPEND" \
  -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" \
  -device virtio-9p-device,fsdev=hostroot,mount_tag=hostroot \
  -device virtio-serial-device \
  -chardev "file,id=cout,path=$JOB/out.fifo" -device virtserialport,chardev=cout,name=ipvsvm.out \
  -chardev "file,id=cst,path=$JOB/status" -device virtserialport,chardev=cst,name=ipvsvm.status \
  -chardev "file,id=con,path=$JOB/console.log" -serial chardev:con -nic none \
  </dev/null >"$JOB/qemu.log" 2>&1 &
QPID=$!
wait "$QPID"; QRC=$?; QPID=
: 1<>"$JOB/out.fifo"
wait "$RELAY" 2>/dev/null
[ "${IPVS_VM_VERBOSE:-0}" = 1 ] && cat "$JOB/console.log" >&2
rc=$(tr -dc '0-9' < "$JOB/status" 2>/dev/null)
[ -n "$rc" ] && exit "$rc"
{ echo "ipvs-vm.sh: no exit status from the guest (qemu exit $QRC)"; cat "$JOB/qemu.log"; tail -n 30 "$JOB/console.log"; } >&2
[ "$QRC" = 124 ] || [ "$QRC" = 137 ] && exit 124
exit 125
