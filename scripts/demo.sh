#!/usr/bin/env bash
# make demo: two local Dovecot instances (own config dirs, loopback ports,
# haproxy = yes listeners, 200 test users) with maildirector in front of
# them, configured by etc/demo.toml. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

demo=${DEMO_DIR:-.demo}
md=${MAILDIRECTOR:-bin/maildirector}
mkdir -p "$demo/tls"
rm -rf "$demo/lab"

if [ ! -s "$demo/tls/cert.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
		-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$demo/tls/key.pem" -out "$demo/tls/cert.pem" 2>/dev/null
fi

go build -o "$demo/dovecotlab" ./cmd/dovecotlab
[ -x "$md" ] || go build -o "$md" ./cmd/maildirector

pids=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "stopping maildirector and the Dovecot instances..."
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "stopped."
}
trap cleanup INT TERM EXIT

# Ports: DEMO_BACKEND_PORT_BASE moves the Dovecot instances (instance N
# listens on base+(N-1)*1000 plus the protocol's port), DEMO_PORT_BASE
# moves maildirector's listeners (base+143, base+993, ...), for machines
# where the defaults are taken.
bbase=${DEMO_BACKEND_PORT_BASE:-10000}
fbase=${DEMO_PORT_BASE:-1000}
cfg="$demo/demo.toml"
# listeners 127.0.0.1:1143 -> fbase+143; Dovecot ports 10143 -> bbase+143, 11143 -> bbase+1143
B=$bbase F=$fbase D=$demo perl -pe 's{"\.demo/}{"$ENV{D}/}g;
	s/"127\.0\.0\.1:1(\d{3})"/sprintf("\"127.0.0.1:%d\"", $ENV{F} + $1)/ge;
	s/= (1[01])(\d{3})\b/sprintf("= %d", $ENV{B} + ($1 - 10) * 1000 + $2)/ge' etc/demo.toml >"$cfg"

fail() {
	echo "make demo: $1" >&2
	[ -n "${2:-}" ] && [ -s "$2" ] && { echo "--- $2:" >&2; tail -n 40 "$2" >&2; }
	exit 1
}

"$demo/dovecotlab" -instances 2 -dir "$demo/lab" -fixed-ports -port-base "$bbase" >"$demo/lab.log" 2>&1 &
labpid=$!
pids+=($labpid)
# dovecotlab prints "ready:" once every instance answers, and exits 1 with
# the failing instance's error (a port in use, a Dovecot that will not
# start) otherwise: wait for one or the other.
for _ in $(seq 1 300); do
	grep -q '^ready:' "$demo/lab.log" && break
	kill -0 "$labpid" 2>/dev/null || fail "the Dovecot backends did not start" "$demo/lab.log"
	sleep 0.1
done
grep -q '^ready:' "$demo/lab.log" || fail "the Dovecot backends did not become ready within 30s" "$demo/lab.log"

"$md" check -c "$cfg" || fail "the demo configuration $cfg is invalid"
"$md" run -c "$cfg" 2>"$demo/maildirector.log" &
mdpid=$!
pids+=($mdpid)
up=
for _ in $(seq 1 100); do
	kill -0 "$mdpid" 2>/dev/null || fail "maildirector did not start" "$demo/maildirector.log"
	if (exec 3<>"/dev/tcp/127.0.0.1/$((fbase + 143))") 2>/dev/null; then up=1; break; fi
	sleep 0.1
done
[ -n "$up" ] || fail "maildirector does not listen on 127.0.0.1:$((fbase + 143))" "$demo/maildirector.log"
imap=$((fbase + 143)) imaps=$((fbase + 993)) pop3s=$((fbase + 995)) lmtp=$((fbase + 24)) sub=$((fbase + 587))
d1=$bbase d2=$((bbase + 1000))
cat <<TXT

maildirector is running in front of two Dovecot instances (dovecot1: $((d1+143))/$((d1+110))/$((d1+24))/$((d1+587)),
dovecot2: $((d2+143))/$((d2+110))/$((d2+24))/$((d2+587))), configured by $cfg (from etc/demo.toml).
Users user000..user199, password "pass".

Log in through maildirector (the certificate is self-signed, hence -k / no verification):

  curl -k --ssl-reqd imap://127.0.0.1:$imap/ -u user001:pass            # IMAP, STARTTLS
  curl -k imaps://127.0.0.1:$imaps/INBOX -u user001:pass -X 'STATUS INBOX (MESSAGES)'
  curl -k pop3s://127.0.0.1:$pop3s/ -u user001:pass                       # POP3 LIST
  python3 -c 'import imaplib,ssl; c=imaplib.IMAP4("127.0.0.1",$imap); c.starttls(ssl._create_unverified_context()); print(c.login("user001","pass")); print(c.select("INBOX")); c.logout()'

Deliver over LMTP (plus-addressed mail goes to the user's own server), then read it over IMAP:
  python3 -c 'import smtplib; s=smtplib.LMTP("127.0.0.1",$lmtp); print(s.sendmail("a@example.org",["user001+news@lab.test","user003@lab.test"],"Subject: hi\r\n\r\nhello\r\n")); s.quit()'
  curl -k imaps://127.0.0.1:$imaps/INBOX -u user001:pass -X 'STATUS INBOX (MESSAGES)'
Send through submission (relayed by Dovecot to a local sink on 127.0.0.1:$((bbase + 26))):
  curl -k --ssl-reqd smtp://127.0.0.1:$sub -u user001:pass --mail-from user001@lab.test --mail-rcpt someone@example.org -T - <<<"Subject: hello"

Which user lands on which backend (from the configuration alone; sticky assignments keep it while sessions live):
TXT
"$md" where -c "$cfg" user000 user001 user002 user003 user004 user005 alice bob | sed 's/^/  /'
cat <<TXT

Dovecot's own log shows the real client address (rip=) and TLS from the PROXY v2 header:
  tail -f $demo/lab/*/dovecot.log
maildirector's log (one line per session): tail -f $demo/maildirector.log

The fleet, live: the dashboard at http://127.0.0.1:$((fbase + 404))/ (open it in a browser), and
  curl -s http://127.0.0.1:$((fbase + 404))/stats.csv      # HAProxy's CSV columns, then maildirector's
  curl -s http://127.0.0.1:$((fbase + 404))/stats.json
  curl -s http://127.0.0.1:$((fbase + 404))/metrics        # Prometheus

Steer it at run time through the control socket:
  $md ctl -s $demo/ctl.sock show servers
  $md ctl -s $demo/ctl.sock where user001
  $md ctl -s $demo/ctl.sock move user001 dovecot2          # closes user001's sessions; they come back on dovecot2
  $md ctl -s $demo/ctl.sock set server dovecot/dovecot1 state drain
  $md ctl -s $demo/ctl.sock freeze user002                 # logins wait, LMTP gets 451 4.2.0 ...
  $md ctl -s $demo/ctl.sock release user002 dovecot1       # ... until released to a server
  $md ctl -s $demo/ctl.sock help

Press Ctrl-C to stop everything.
TXT
wait
