#!/bin/sh
# deps.sh: install what maildirector's tests, demo and benchmarks need on a
# Debian machine (Dovecot 2.3 with IMAP, POP3, LMTP, submission and
# ManageSieve, sieve-connect as the real ManageSieve client, HAProxy,
# OpenSSL, systemd's tools to verify the shipped unit, Postfix as the MTA of
# the end-to-end LMTP test, Chromium for the headless dashboard test, nginx
# with its WebDAV PUT/DELETE as the object store of the HTTP path's tests,
# etcd as the shared store of the [cluster] tests),
# and make sure the packaged Dovecot, HAProxy, Postfix and nginx services are
# not left running: the tests start their own instances on loopback.
# Idempotent; runs no apt when everything is present. Prints one line.
set -eu

need="/usr/sbin/dovecot /usr/bin/doveconf /usr/lib/dovecot/imap-login /usr/lib/dovecot/pop3-login
/usr/lib/dovecot/lmtp /usr/lib/dovecot/submission-login /usr/sbin/haproxy
/usr/lib/dovecot/managesieve-login /usr/lib/dovecot/managesieve /usr/bin/sieve-connect
/usr/bin/systemd-analyze /usr/bin/systemd-sysusers
/usr/sbin/postfix /usr/sbin/postqueue /usr/sbin/postconf
/usr/bin/chromium /usr/sbin/nginx /usr/bin/etcd /usr/bin/unshare /usr/sbin/ip"
packages="dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond dovecot-managesieved sieve-connect haproxy openssl curl systemd postfix chromium nginx etcd-server util-linux iproute2"

missing=""
for f in $need; do
	[ -x "$f" ] || missing="$missing $f"
done
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v curl >/dev/null 2>&1 || missing="$missing curl"

did="present"
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps.sh: missing:$missing; run as root to install $packages" >&2
		exit 1
	fi
	# Keep the packages' postinst scripts from starting the services
	# (policy-rc.d exit 101 = "action forbidden", see invoke-rc.d(8)).
	policy=/usr/sbin/policy-rc.d
	own_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	# Postfix asks what kind of mail system this is; the answer "No
	# configuration" leaves /etc/postfix/main.cf unwritten and the system
	# instance unconfigured (the test runs its own with postfix -c DIR).
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	status=0
	{
		apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages
	} >/tmp/maildirector-deps.log 2>&1 || status=$?
	[ -n "$own_policy" ] && rm -f "$policy"
	if [ "$status" -ne 0 ]; then
		echo "deps.sh: apt-get failed (exit $status); last lines of /tmp/maildirector-deps.log:" >&2
		tail -n 20 /tmp/maildirector-deps.log >&2
		exit 1
	fi
	for f in $need; do
		if [ ! -x "$f" ]; then
			echo "deps.sh: $f still missing after installing $packages" >&2
			exit 1
		fi
	done
	did="installed$missing"
fi

# Stop the packaged services if they run: only the system instances, found
# by their own pid files (our labs use other base_dirs and are left alone).
stopped=""
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	for s in dovecot haproxy postfix nginx etcd; do
		if systemctl is-active --quiet "$s" 2>/dev/null || systemctl is-enabled --quiet "$s" 2>/dev/null; then
			systemctl disable --now "$s" >/dev/null 2>&1 && stopped="$stopped $s"
		fi
	done
fi
for entry in dovecot:/run/dovecot/master.pid haproxy:/run/haproxy.pid postfix:/var/spool/postfix/pid/master.pid nginx:/run/nginx.pid; do
	name=${entry%%:*}
	pf=${entry#*:}
	if [ -s "$pf" ]; then
		pid=$(head -n 1 "$pf" | tr -d " \t")
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null && stopped="$stopped $name($pid)"
		fi
	fi
done

echo "deps.sh: dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1), haproxy $(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f3), postfix $(postconf -dh mail_version 2>/dev/null), chromium $(chromium --version 2>/dev/null | cut -d' ' -f2), nginx $(nginx -v 2>&1 | sed 's,.*/,,'), etcd $(etcd --version 2>/dev/null | head -n 1 | cut -d' ' -f3): $did${stopped:+; stopped packaged service:$stopped}"
