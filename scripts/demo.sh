#!/usr/bin/env bash
# make demo: two local Dovecot instances (own config dirs, loopback ports,
# haproxy = yes listeners, 200 test users) with maildirector in front of
# them, configured by etc/demo.toml. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

demo=.demo
mkdir -p "$demo/tls"
rm -rf "$demo/lab"

if [ ! -s "$demo/tls/cert.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
		-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$demo/tls/key.pem" -out "$demo/tls/cert.pem" 2>/dev/null
fi

go build -o bin/dovecotlab ./cmd/dovecotlab
[ -x bin/maildirector ] || go build -o bin/maildirector ./cmd/maildirector

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

bin/dovecotlab -instances 2 -dir "$demo/lab" -fixed-ports >"$demo/lab.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
	if (exec 3<>/dev/tcp/127.0.0.1/10143) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/11143) 2>/dev/null; then
		break
	fi
	sleep 0.2
done
if ! (exec 3<>/dev/tcp/127.0.0.1/11143) 2>/dev/null; then
	echo "Dovecot did not start; its output:"; cat "$demo/lab.log"; exit 1
fi

bin/maildirector check -c etc/demo.toml
bin/maildirector run -c etc/demo.toml 2>"$demo/maildirector.log" &
pids+=($!)
for _ in $(seq 1 50); do
	(exec 3<>/dev/tcp/127.0.0.1/1143) 2>/dev/null && break
	sleep 0.1
done

cat <<'TXT'

maildirector is running in front of two Dovecot instances (dovecot1: 10143/10110/10024/10587,
dovecot2: 11143/11110/11024/11587), configured by etc/demo.toml. Users user000..user199, password "pass".

Log in through maildirector (the certificate is self-signed, hence -k / no verification):

  curl -k --ssl-reqd imap://127.0.0.1:1143/ -u user001:pass            # IMAP, STARTTLS
  curl -k imaps://127.0.0.1:1993/INBOX -u user001:pass -X 'STATUS INBOX (MESSAGES)'
  curl -k pop3s://127.0.0.1:1995/ -u user001:pass                       # POP3 LIST
  python3 -c 'import imaplib,ssl; c=imaplib.IMAP4("127.0.0.1",1143); c.starttls(ssl._create_unverified_context()); print(c.login("user001","pass")); print(c.select("INBOX")); c.logout()'

Deliver over LMTP, then read it over IMAP:
  python3 -c 'import smtplib; s=smtplib.LMTP("127.0.0.1",1024); print(s.sendmail("a@example.org",["user001@lab.test","user003@lab.test"],"Subject: hi\r\n\r\nhello\r\n")); s.quit()'
  curl -k imaps://127.0.0.1:1993/INBOX -u user001:pass -X 'STATUS INBOX (MESSAGES)'
Send through submission (relayed by Dovecot to a local sink on 127.0.0.1:10026):
  curl -k --ssl-reqd smtp://127.0.0.1:1587 -u user001:pass --mail-from user001@lab.test --mail-rcpt someone@example.org -T - <<<"Subject: hello"

Which user lands on which backend (from the configuration alone; sticky assignments keep it while sessions live):
TXT
bin/maildirector where -c etc/demo.toml user000 user001 user002 user003 user004 user005 alice bob | sed 's/^/  /'
cat <<TXT

Dovecot's own log shows the real client address (rip=) and TLS from the PROXY v2 header:
  tail -f $demo/lab/*/dovecot.log
maildirector's log (one line per session): tail -f $demo/maildirector.log

Press Ctrl-C to stop everything.
TXT
wait
