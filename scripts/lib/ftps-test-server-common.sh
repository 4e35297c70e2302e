# Shared by the scripts/*-test-server scripts (sourced, not run): the pieces
# every FTPS test server needs the same way, so that servers started by
# different scripts at the same time never pick the same ports, agree on the
# test user's password, and are all trusted through one kind of test CA.
#
# The sourcing script sets PROG (its name, for messages) before sourcing.
#
# Provides: die, note, need_root; port blocks (pick_block, port_free) under a
# lock shared by all the scripts; make_certs (CA, server certificate, wrong
# CA); make_client_certs (client CA, client certificate, a foreign one); ensure_user (system user, PAM service, kept password); tls_version_ok,
# tls_max; and for the servers that run in a session of their own (ProFTPD,
# Pure-FTPd, pyftpdlib): launch_in_session, kill_session, wait_banner,
# prepare_state_dir, stop_session_server, fail_session_start, print_env,
# dispatch, and extracted_package (Debian packages unpacked, not installed).

HOST=127.0.0.1
# HOST as it goes into a URL or host:port (IPv6 addresses in brackets).
HOST_URL=$HOST
LOCK_FILE=/run/lock/ftpsfs-test-server.lock
REGISTRY=/run/ftpsfs-test-server/blocks   # one file per reserved port block
VARLIB=/var/lib/ftpsfs-test-server
PAM_SERVICE=ftpsfs-test-server
# marks a state dir as ours (stop removes it); each script has its own
# MARKER_PREFIX-SUFFIX marker (vsftpd's is the prefix alone) so that one
# script's stop never removes another's servers' directory
MARKER_PREFIX=.ftpsfs-test-server
MARKER=$MARKER_PREFIX${MARKER_SUFFIX:+-$MARKER_SUFFIX}
# Port blocks: BLOCK_SIZE ports from BLOCK_LO up, below the ephemeral range.
BLOCK_SIZE=128
BLOCK_LO=12800
BLOCK_HI=32640   # last base
START_TIMEOUT=10
# openssl s_client arguments that present a client certificate (set by a
# script whose server requires one)
CLIENT_CERT_ARGS=()
SAFE_RE='^[A-Za-z0-9._/@%+=:,-]+$'

die() { echo "$PROG: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

# ---------------------------------------------------------------- ports

# used_ports: every local TCP port in use (listening or connected), one a line.
used_ports() {
  ss -Htan | awk '{ n = split($4, a, ":"); print a[n] }' | sort -un
}

port_free() {
  local p=$1
  ! used_ports | grep -qx "$p"
}

# pick_block DIR: reserve a block of BLOCK_SIZE ports none of which is in use or
# reserved by another server of ours; prints its base. Caller holds the lock.
pick_block() {
  local dir=$1 used base f d tries
  mkdir -p "$REGISTRY"
  # drop reservations whose state dir is gone
  for f in "$REGISTRY"/*; do
    [[ -f $f ]] || continue
    d=$(<"$f")
    [[ -d $d ]] && compgen -G "$d/$MARKER_PREFIX*" >/dev/null || rm -f "$f"
  done
  used=$(used_ports)
  local nblocks=$(((BLOCK_HI - BLOCK_LO) / BLOCK_SIZE + 1))
  for ((tries = 0; tries < 200; tries++)); do
    base=$((BLOCK_LO + (RANDOM % nblocks) * BLOCK_SIZE))
    [[ -e $REGISTRY/$base ]] && continue
    if awk -v lo="$base" -v hi="$((base + BLOCK_SIZE - 1))" \
        '$1 >= lo && $1 <= hi { found = 1 } END { exit !found }' <<<"$used"; then
      continue
    fi
    echo "$dir" >"$REGISTRY/$base"
    echo "$base"
    return 0
  done
  die "no free block of $BLOCK_SIZE ports between $BLOCK_LO and $((BLOCK_HI + BLOCK_SIZE))"
}

# ---------------------------------------------------------------- setup pieces

make_certs() {
  local dir=$1 t=$1/certgen
  mkdir -p "$t"
  ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  ec_key "$t/ca.key"
  openssl req -x509 -new -key "$t/ca.key" -sha256 -days 30 \
    -subj "/O=ftpsfs tests/CN=ftpsfs test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem"
  ec_key "$dir/server.key"
  openssl req -new -key "$dir/server.key" -subj "/O=ftpsfs tests/CN=localhost" \
    -out "$t/server.csr"
  cat >"$t/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
  openssl x509 -req -in "$t/server.csr" -CA "$dir/ca.pem" -CAkey "$t/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -sha256 -days 30 \
    -extfile "$t/server.ext" -out "$dir/server.pem" 2>/dev/null
  # an unrelated CA, for tests that must fail verification
  ec_key "$t/wrong-ca.key"
  openssl req -x509 -new -key "$t/wrong-ca.key" -sha256 -days 30 \
    -subj "/O=ftpsfs tests/CN=ftpsfs wrong CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/wrong-ca.pem"
  openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null \
    || die "generated server certificate does not verify against its CA"
  chmod 600 "$dir/server.key"
  chmod 644 "$dir/ca.pem" "$dir/server.pem" "$dir/wrong-ca.pem"
  rm -rf "$t"
}

# make_client_certs DIR: certificates for mutual TLS (a server that requires a
# client certificate): a client CA (DIR/client-ca.pem, the one the server
# trusts), a client certificate it signed (DIR/client.pem, key DIR/client.key,
# PKCS#8), and a certificate of an unrelated CA (DIR/foreign-client.pem, key
# DIR/foreign-client.key) that the server must refuse. EC P-256, 30 days,
# CA:FALSE, extendedKeyUsage clientAuth. Keys are mode 600.
make_client_certs() {
  local dir=$1 t=$1/clientcertgen who
  mkdir -p "$t"
  cat >"$t/client.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
  for who in client foreign; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/$who-ca.key" 2>/dev/null
    openssl req -x509 -new -key "$t/$who-ca.key" -sha256 -days 30 \
      -subj "/O=ftpsfs tests/CN=ftpsfs $who client CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$t/$who-ca.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/$who.key" 2>/dev/null
    openssl req -new -key "$t/$who.key" -subj "/O=ftpsfs tests/CN=ftpsfs $who client" \
      -out "$t/$who.csr"
    openssl x509 -req -in "$t/$who.csr" -CA "$t/$who-ca.pem" -CAkey "$t/$who-ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -sha256 -days 30 \
      -extfile "$t/client.ext" -out "$t/$who.pem" 2>/dev/null
  done
  cp "$t/client-ca.pem" "$dir/client-ca.pem"
  cp "$t/client.pem" "$dir/client.pem"
  cp "$t/foreign.pem" "$dir/foreign-client.pem"
  (umask 077 && cp "$t/client.key" "$dir/client.key" && cp "$t/foreign.key" "$dir/foreign-client.key")
  openssl verify -CAfile "$dir/client-ca.pem" "$dir/client.pem" >/dev/null \
    || die "generated client certificate does not verify against its CA"
  if openssl verify -CAfile "$dir/client-ca.pem" "$dir/foreign-client.pem" >/dev/null 2>&1; then
    die "the foreign client certificate verifies against the client CA"
  fi
  chmod 600 "$dir/client.key" "$dir/foreign-client.key"
  chmod 644 "$dir/client-ca.pem" "$dir/client.pem" "$dir/foreign-client.pem"
  rm -rf "$t"
}

# ensure_user NAME PASSWORD-OR-EMPTY: create/reuse the system user; prints password.
ensure_user() {
  local user=$1 pw=$2 pwfile
  [[ $user =~ ^[a-z_][a-z0-9_-]*$ ]] || die "bad user name: $user"
  if [[ $user == root ]]; then die "refusing to use root"; fi
  # vsftpd chdir()s to the passwd home before it chroots into local_root, so the
  # home must exist; it is a shared empty directory, the files live in local_root
  mkdir -p "$VARLIB/home"
  chmod 755 "$VARLIB" "$VARLIB/home"
  if ! getent passwd "$user" >/dev/null; then
    useradd --system --no-create-home --home-dir "$VARLIB/home" \
      --shell /usr/sbin/nologin --comment "ftpsfs test FTP user" "$user"
  fi
  local home
  home=$(getent passwd "$user" | cut -d: -f6)
  if [[ ! -d $home ]]; then
    usermod --home "$VARLIB/home" "$user" \
      || die "cannot set the home of $user to $VARLIB/home (is it in use?)"
  fi
  local uid
  uid=$(id -u "$user")
  ((uid != 0)) || die "user $user has uid 0; refusing"
  # dedicated PAM service: password check and account only, no pam_shells,
  # no /etc/ftpusers list (Debian's /etc/pam.d/vsftpd has both)
  if [[ ! -f /etc/pam.d/$PAM_SERVICE ]]; then
    cat >"/etc/pam.d/$PAM_SERVICE" <<'EOF'
# ftpsfs scripts/ftps-test-server: vsftpd logins for the test user.
auth     required pam_unix.so
account  required pam_unix.so
session  required pam_permit.so
EOF
  fi
  pwfile=$VARLIB/$user.password
  if [[ -z $pw ]]; then
    if [[ -s $pwfile ]]; then
      pw=$(<"$pwfile")
    else
      pw=$(openssl rand -hex 12)
    fi
  fi
  (umask 077; printf '%s\n' "$pw" >"$pwfile")
  printf '%s:%s\n' "$user" "$pw" | chpasswd
  # an expired or locked account would make PAM refuse the login
  chage -E -1 -M -1 "$user" 2>/dev/null || true
  usermod -U "$user" 2>/dev/null || true
  echo "$pw"
}


# tls_version_ok PORT VERSION(1.2|1.3): a TLS handshake with exactly VERSION
# works on the explicit-FTPS PORT (certificate checked against DIR/ca.pem).
tls_version_ok() {
  local port=$1 v=$2 opt
  case $v in 1.2) opt=-tls1_2 ;; 1.3) opt=-tls1_3 ;; esac
  timeout 5 openssl s_client -starttls ftp -connect "$HOST_URL:$port" "$opt" \
    -CAfile "$DIR/ca.pem" -verify_return_error "${CLIENT_CERT_ARGS[@]}" \
    </dev/null >"$DIR/tlscheck.out" 2>&1 || true
  grep -q "^New, TLSv$v," "$DIR/tlscheck.out"
}

# tls_max PORT: the highest TLS version the server accepts (1.2 or 1.3), after
# checking that it accepts TLS 1.2 at all.
tls_max() {
  local port=$1
  tls_version_ok "$port" 1.2 || { note "TLS 1.2 handshake failed: $(tail -n 5 "$DIR/tlscheck.out")"; return 1; }
  if tls_version_ok "$port" 1.3; then echo 1.3; else echo 1.2; fi
  rm -f "$DIR/tlscheck.out"
}

# ---------------------------------------------------------------- servers in a session of their own
#
# ProFTPD, Pure-FTPd and pyftpdlib are started by setsid in a new session: the
# listener and every process it forks (which may rename themselves, e.g.
# "proftpd: user - host: IDLE") share that session id, so stop finds exactly
# what this script started, and nothing else, by session id and executable.

# launch_in_session NAME COMMAND...: start COMMAND in DIR as a session leader,
# stdin from /dev/null, stdout+stderr to DIR/NAME.out; its pid in DIR/NAME.pid.
launch_in_session() {
  local name=$1 pid sid
  shift
  : >"$DIR/$name.out"
  setsid "$@" </dev/null >>"$DIR/$name.out" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/$name.pid"
  # whatever ends start before print_env (an unexpected error under set -e
  # included) must not leave the server running
  trap "[[ \${START_DONE:-0} == 1 ]] || kill_session '$DIR/$name.pid' \"\$(<'$DIR/server-binary')\"" EXIT
  # setsid forks (and $! is not the leader) only if it was a group leader,
  # which a background job of a script is not; check rather than assume (the
  # child is in our session until it has run setsid: wait for that, briefly)
  local i
  for ((i = 0; i < 50; i++)); do
    sid=$(session_of "$pid")
    [[ -z $sid || $sid == "$pid" ]] && return 0
    sleep 0.02
  done
  kill "$pid" 2>/dev/null || true
  die "$name: setsid did not make pid $pid a session leader"
}

# session_of PID: the session id of PID (empty if PID is gone).
session_of() {
  local stat
  { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 0
  stat=${stat##*) }   # the fields after "(comm)": state ppid pgrp session ...
  local -a f
  read -r -a f <<<"$stat"
  echo "${f[3]}"
}

# session_pids LEADER EXE: the live processes of session LEADER running EXE.
session_pids() {
  local leader=$1 exe=$2 d pid
  [[ $leader =~ ^[0-9]+$ ]] || return 0
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $(session_of "$pid") == "$leader" ]] || continue
    [[ $(readlink "$d/exe" 2>/dev/null) == "$exe" ]] && echo "$pid"
  done
  return 0
}

# kill_session PIDFILE EXE: SIGTERM the session's EXE processes, SIGKILL what
# is left after 1 s, wait up to 3 s for them to be gone.
kill_session() {
  local pidfile=$1 exe=$2 leader i pids
  [[ -f $pidfile ]] || return 0
  leader=$(<"$pidfile")
  pids=$(session_pids "$leader" "$exe")
  for ((i = 0; i < 30 && ${#pids} > 0; i++)); do
    if ((i == 0)); then
      kill -TERM $pids 2>/dev/null || true
    elif ((i >= 10)); then
      kill -KILL $pids 2>/dev/null || true
    fi
    sleep 0.1
    pids=$(session_pids "$leader" "$exe")
  done
  [[ -z $pids ]] || note "warning: processes still alive: $pids"
  rm -f "$pidfile"
}

# wait_banner NAME PORT: until the server of DIR/NAME.pid answers 220 on PORT
# (explicit FTPS: the banner is plain text). Fails the start with the server's
# own output if it exits or does not answer within START_TIMEOUT seconds.
wait_banner() {
  local name=$1 port=$2 pid line deadline=$((SECONDS + START_TIMEOUT))
  pid=$(<"$DIR/$name.pid")
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      fail_start "$name exited during start-up: $(server_output "$name")"
    fi
    if line=$(timeout 3 bash -c 'exec 3<>/dev/tcp/$0/$1 && IFS= read -r -t 2 l <&3 && printf %s "$l"' "$HOST" "$port" 2>/dev/null) \
       && [[ $line == 220* ]]; then
      return 0
    fi
    sleep 0.2
  done
  fail_start "$name did not answer 220 on $HOST:$port within ${START_TIMEOUT}s: $(server_output "$name")"
}

# server_output NAME: what the server printed (its own error message).
server_output() {
  local msg
  msg=$(tr -d '\r' <"$DIR/$1.out" 2>/dev/null | grep -v '^$' | tail -n 20 || true)
  echo "${msg:-(no output from $1)}"
}

# prepare_state_dir TEMPLATE: set DIR to the --dir given (or a new mktemp -d
# TEMPLATE), refusing a directory that is not ours or whose server still runs
# (server_running, defined by the script); leaves DIR/home empty, owned later.
prepare_state_dir() {
  local template=$1
  if [[ -z $DIR ]]; then
    DIR=$(mktemp -d "$template")
  else
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    if [[ -f $DIR/$MARKER ]]; then
      server_running && die "a server is already running in $DIR (stop it first: $PROG stop --dir $DIR)"
      if [[ -f $DIR/block ]]; then rm -f "$REGISTRY/$(<"$DIR/block")" "$DIR/block"; fi
    elif [[ -n $(ls -A "$DIR") ]]; then
      die "$DIR exists, is not empty and is not a state directory of $PROG"
    fi
  fi
  [[ $DIR =~ $SAFE_RE ]] || die "state directory path may only use [A-Za-z0-9._/@%+=:,-]: $DIR"
  : >"$DIR/$MARKER"
  chmod 755 "$DIR"
  rm -rf "$DIR/home"
  mkdir -p "$DIR/home"
}

# checked_state_dir DIR: DIR resolved, if it is a state directory of this
# script (prints nothing if DIR does not exist; dies if it is not ours).
checked_state_dir() {
  local dir=$1
  [[ -e $dir ]] || return 0
  dir=$(cd "$dir" && pwd -P)
  [[ -f $dir/$MARKER ]] || die "$dir is not a state directory of $PROG (no $MARKER); not touching it"
  echo "$dir"
}

# release_block DIR: forget DIR's port block reservation.
release_block() {
  if [[ -f $1/block ]]; then rm -f "$REGISTRY/$(<"$1/block")"; fi
}

# curl_self_check URL-PATH...: log in and list with curl (TLS required, our
# CA), as a client would; prints curl's error on failure.
curl_self_check() {
  local port=$1
  curl -sS --max-time 10 --ssl-reqd --cacert "$DIR/ca.pem" \
    --user "$USER_NAME:$PASSWORD" "ftp://$HOST_URL:$port/" 2>&1
}

# stop_session_server NAME ARGS...: `stop --dir DIR` for a server started by
# launch_in_session NAME, whose executable start wrote to DIR/server-binary:
# end its processes, forget its port block, remove DIR.
stop_session_server() {
  local name=$1 dir="" exe
  shift
  while (($#)); do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift 2 ;;
      --dir=*) dir=${1#--dir=}; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "stop: unknown argument: $1 (see --help)" ;;
    esac
  done
  need_root
  [[ -n $dir ]] || die "stop: --dir DIR is required"
  dir=$(checked_state_dir "$dir")
  [[ -n $dir ]] || return 0
  if [[ -f $dir/server-binary ]]; then
    exe=$(<"$dir/server-binary")
    kill_session "$dir/$name.pid" "$exe"
  fi
  release_block "$dir"
  rm -rf -- "$dir"
}

# fail_session_start NAME MESSAGE: stop what start began, keep DIR, exit 1.
fail_session_start() {
  local name=$1
  shift
  note "start failed: $*"
  if [[ -f $DIR/server-binary ]]; then
    kill_session "$DIR/$name.pid" "$(<"$DIR/server-binary")" || true
  fi
  release_block "$DIR"
  note "state kept for inspection in $DIR (remove it with: $PROG stop --dir $DIR)"
  exit 1
}

# record_server_binary PATH: the executable stop looks for (as /proc/PID/exe
# names it: symlinks resolved).
record_server_binary() {
  readlink -f "$1" >"$DIR/server-binary"
}

# server_running_in NAME: the server of DIR/NAME.pid still runs.
server_running_in() {
  [[ -f $DIR/$1.pid && -f $DIR/server-binary ]] \
    && [[ -n $(session_pids "$(<"$DIR/$1.pid")" "$(<"$DIR/server-binary")") ]]
}

# dispatch ARGS...: the scripts' command line (start|stop|prepare|--help);
# `prepare` (unpack the server, check its libraries: what CI does before the
# tests) is for the scripts that define cmd_prepare.
dispatch() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    prepare)
      need_root
      declare -F cmd_prepare >/dev/null || die "prepare: nothing to prepare for this server"
      cmd_prepare
      ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

# print_env KEY=VALUE...: write the lines to DIR/env and stdout.
print_env() {
  printf '%s\n' "$@" >"$DIR/env"
  cat "$DIR/env"
  START_DONE=1
}

# ---------------------------------------------------------------- extracted Debian packages

# SERVER_CACHE: where packages that conflict with the installed vsftpd (they
# all provide ftp-server) are unpacked with apt-get download + dpkg -x, once.
SERVER_CACHE=${FTPSFS_SERVER_CACHE:-/var/cache/ftpsfs-test-servers}

# extracted_package NAME PACKAGE...: unpack the PACKAGEs into SERVER_CACHE/NAME
# unless done before; prints the directory. Needs the Debian archive
# (apt-get download) the first time only.
extracted_package() {
  local name=$1 root=$SERVER_CACHE/$1 pkg deb
  shift
  if [[ -f $root/.complete ]]; then echo "$root"; return 0; fi
  mkdir -p "$SERVER_CACHE/debs"
  # two servers starting at once on a fresh machine: one unpacks, one waits
  exec 8>"$SERVER_CACHE/.lock"
  flock -w 300 8 || die "could not lock $SERVER_CACHE/.lock"
  if [[ ! -f $root/.complete ]]; then
    rm -rf "$root"
    mkdir -p "$root"
    for pkg in "$@"; do
      deb=$(compgen -G "$SERVER_CACHE/debs/${pkg}_*.deb" | head -n 1 || true)
      if [[ -z $deb ]]; then
        (cd "$SERVER_CACHE/debs" \
          && timeout 300 apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) \
          || die "apt-get download $pkg failed (needs the Debian archive once; then $SERVER_CACHE is reused)"
        deb=$(compgen -G "$SERVER_CACHE/debs/${pkg}_*.deb" | head -n 1)
      fi
      dpkg -x "$deb" "$root" || die "dpkg -x $deb failed"
    done
    : >"$root/.complete"
  fi
  exec 8>&-
  echo "$root"
}

# check_libraries PACKAGES BINARY...: every shared library the BINARYs need
# is there (dpkg -x does not install the unpacked packages' dependencies);
# else fail naming the Debian PACKAGES that provide them.
check_libraries() {
  local packages=$1 missing
  shift
  missing=$(ldd "$@" 2>/dev/null | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')
  [[ -z $missing ]] || die "missing libraries: $missing(apt-get install -y $packages; .ci/run does)"
}
