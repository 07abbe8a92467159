package dovecotlab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/template"
)

// configParams is what the dovecot.conf template needs for one instance.
type configParams struct {
	InstanceName         string
	BaseDir              string
	StateDir             string
	LogPath              string
	UsersFile            string
	Hostname             string
	TrustedNetworks      string
	LoginTrustedNetworks string
	DisablePlaintextAuth bool
	RelayHost            string
	RelayPort            int
	UID, GID             int
	Ports                InstancePorts
	// ListenAddress is the IP of every listener (127.0.0.1 or ::1).
	ListenAddress string
	// SSL turns on implicit TLS on the haproxy = yes IMAP, POP3 and
	// submission listeners, with CertFile and KeyFile.
	SSL               bool
	CertFile, KeyFile string
	// LoginProcessPerConnection sets service_count = 1 on the login services.
	LoginProcessPerConnection bool
	// OAuth2URL, when set, adds an oauth2 passdb for OAUTHBEARER and
	// XOAUTH2 whose token introspection (RFC 7662, POST) goes there;
	// OAuth2File is its dovecot-oauth2.conf.ext.
	OAuth2URL, OAuth2File string
	// ManageSieve adds the sieve protocol: a managesieve-login listener
	// with haproxy = yes on Ports.ManageSieve and the Sieve plugin's
	// script storage (Pigeonhole, Debian's dovecot-managesieved).
	ManageSieve bool
}

// configTemplate is the whole dovecot.conf of one instance: no include of
// /etc/dovecot, so the packaged configuration never leaks in.
var configTemplate = template.Must(template.New("dovecot.conf").Parse(`# Written by maildirector's dovecotlab; regenerated on every start.
instance_name = {{.InstanceName}}
base_dir = {{.BaseDir}}
state_dir = {{.StateDir}}
protocols = imap pop3 lmtp submission{{if .ManageSieve}} sieve{{end}}
listen = {{.ListenAddress}}
{{- if .SSL}}
ssl = yes
ssl_cert = <{{.CertFile}}
ssl_key = <{{.KeyFile}}
{{- else}}
ssl = no
{{- end}}
disable_plaintext_auth = {{if .DisablePlaintextAuth}}yes{{else}}no{{end}}
haproxy_trusted_networks = {{.TrustedNetworks}}
{{- if .LoginTrustedNetworks}}
login_trusted_networks = {{.LoginTrustedNetworks}}
{{- end}}
verbose_proctitle = yes

log_path = {{.LogPath}}
auth_verbose = yes
# The default elements plus the client's port (rport), so the log shows the
# real client's address and port as the PROXY header carried them, and the
# TLS SNI name (local_name; a PROXY v2 AUTHORITY TLV sets it), which Dovecot
# leaves out when it is empty.
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c session=<%{session}> local_name=%{local_name}
auth_mechanisms = plain login{{if .OAuth2URL}} oauthbearer xoauth2{{end}}
# "user000@lab.test" and "user000" are the same user, for LMTP RCPT and logins.
auth_username_format = %Ln
auth_failure_delay = 0
auth_cache_size = 0

hostname = {{.Hostname}}
postmaster_address = postmaster@lab.test
submission_host = {{.RelayHost}}:{{.RelayPort}}
submission_relay_host = {{.RelayHost}}
submission_relay_port = {{.RelayPort}}
submission_relay_ssl = no
lmtp_save_to_detail_mailbox = no
# The over-quota user (FullUser): LMTP checks the quota at RCPT, as a site
# with lmtp_rcpt_check_quota does, so that user is refused there.
lmtp_rcpt_check_quota = yes
protocol lmtp {
  mail_plugins = $mail_plugins quota
}
plugin {
  quota = maildir:User quota
{{- if .ManageSieve}}
  # Pigeonhole's script storage: ManageSieve keeps each user's scripts in
  # ~/sieve, the active one linked from ~/.dovecot.sieve.
  sieve = file:~/sieve;active=~/.dovecot.sieve
{{- end}}
}

mail_location = maildir:~/Maildir
first_valid_uid = {{.UID}}
last_valid_uid = 0
first_valid_gid = {{.GID}}
last_valid_gid = 0
# Benchmarks open many sessions for one user from 127.0.0.1.
mail_max_userip_connections = 10000

default_process_limit = 100
default_client_limit = 1000
default_vsz_limit = 256 M

{{- if .OAuth2URL}}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {{.OAuth2File}}
}
{{- end}}
passdb {
  driver = passwd-file
  args = {{.UsersFile}}
}
userdb {
  driver = passwd-file
  args = {{.UsersFile}}
}

# Login services run in high-performance mode: one process serves many
# pre-login connections, so the process count stays small.
service imap-login {
  service_count = {{if .LoginProcessPerConnection}}1{{else}}0{{end}}
  process_min_avail = 1
  process_limit = 4
  inet_listener imap {
    address = {{$.ListenAddress}}
    port = {{.Ports.IMAP}}
    haproxy = yes{{if .SSL}}
    ssl = yes{{end}}
  }
  inet_listener imap-direct {
    address = {{$.ListenAddress}}
    port = {{.Ports.IMAPDirect}}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  service_count = {{if .LoginProcessPerConnection}}1{{else}}0{{end}}
  process_min_avail = 1
  process_limit = 4
  inet_listener pop3 {
    address = {{$.ListenAddress}}
    port = {{.Ports.POP3}}
    haproxy = yes{{if .SSL}}
    ssl = yes{{end}}
  }
  inet_listener pop3-direct {
    address = {{$.ListenAddress}}
    port = {{.Ports.POP3Direct}}
  }
  inet_listener pop3s {
    port = 0
  }
}
service submission-login {
  service_count = {{if .LoginProcessPerConnection}}1{{else}}0{{end}}
  process_min_avail = 1
  process_limit = 4
  inet_listener submission {
    address = {{$.ListenAddress}}
    port = {{.Ports.Submission}}
    haproxy = yes{{if .SSL}}
    ssl = yes{{end}}
  }
}
{{- if .ManageSieve}}
service managesieve-login {
  service_count = {{if .LoginProcessPerConnection}}1{{else}}0{{end}}
  process_min_avail = 1
  process_limit = 4
  inet_listener sieve {
    address = {{$.ListenAddress}}
    port = {{.Ports.ManageSieve}}
    haproxy = yes
  }
}
service managesieve {
  process_limit = 256
}
{{- end}}
service lmtp {
  process_limit = 32
  unix_listener lmtp {
    mode = 0600
  }
  inet_listener lmtp {
    address = {{$.ListenAddress}}
    port = {{.Ports.LMTP}}
    haproxy = yes
  }
  inet_listener lmtp-direct {
    address = {{$.ListenAddress}}
    port = {{.Ports.LMTPDirect}}
  }
}
service imap {
  process_limit = 1024
}
service pop3 {
  process_limit = 256
}
service submission {
  process_limit = 256
}
service anvil {
  client_limit = 4000
  # Moving the penalty socket away turns the auth penalty off (the auth
  # process ignores a missing socket): every test connects from 127.0.0.1,
  # and one failed login must not slow the next ones by up to 15 seconds.
  unix_listener anvil-auth-penalty {
    path = anvil-auth-penalty-disabled
    mode = 0600
  }
}
service auth {
  client_limit = 4000
}
service imap-urlauth-login {
  process_limit = 1
}
`))

// renderConfig returns the dovecot.conf text for p.
func renderConfig(p configParams) ([]byte, error) {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render dovecot.conf: %w", err)
	}
	return b.Bytes(), nil
}

// splitRelay turns "host:port" into the two submission_relay settings; an
// empty relay points at port 1 of 127.0.0.1, where nothing listens, so a
// submitted message fails visibly instead of leaving the machine.
func splitRelay(relay string) (string, int, error) {
	if relay == "" {
		return "127.0.0.1", 1, nil
	}
	host, port, err := net.SplitHostPort(relay)
	if err != nil {
		return "", 0, fmt.Errorf("submission relay %q: %w", relay, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("submission relay %q: bad port", relay)
	}
	return host, n, nil
}

// checkConfig runs doveconf on the file, which parses it the way the master
// will and reports the first error with its line number.
func checkConfig(path string) error {
	out, err := exec.Command(doveconfPath, "-c", path, "-n").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s: %s", ErrConfig, path, strings.TrimSpace(lastLines(string(out), 5)))
	}
	return nil
}

// writeUsers writes the passwd-file shared by passdb and userdb: every user
// has password "pass" unless passwords names another (RFC 4616 PLAIN and
// LOGIN both carry it in clear, so the {PLAIN} scheme suffices) and a home
// under mailRoot.
func writeUsers(path, mailRoot string, users []string, passwords map[string]string, uid, gid int) error {
	var b strings.Builder
	for _, u := range users {
		pw := Password
		if p, ok := passwords[u]; ok {
			if strings.ContainsAny(p, ":\r\n") {
				return fmt.Errorf("password of %s: no ':' or line break in a passwd-file", u)
			}
			pw = p
		}
		fmt.Fprintf(&b, "%s:{PLAIN}%s:%d:%d::%s/%s::\n", u, pw, uid, gid, mailRoot, u)
	}
	// FullUser's quota is one byte, and its maildir holds a message.
	fmt.Fprintf(&b, "%s:{PLAIN}%s:%d:%d::%s/%s::userdb_quota_rule=*:storage=1B\n", FullUser, Password, uid, gid, mailRoot, FullUser)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}
