package director

import (
	"bytes"
	"cmp"
	"crypto/md5"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
)

// BalanceDirector is Dovecot 2.3's director placement, rebuilt from the
// behaviour of its source (dovecot/core 2.3.19) so that a site leaving a
// Dovecot director tier keeps every user on the server the director gave it.
// Nothing of Dovecot's code is copied; each rule below names the function
// whose behaviour it reproduces.
//
// The ring (src/director/mail-host.c, mail_vhost_add and
// mail_tag_vhosts_sort_ring): every server that is up and has
// vhost_count > 0 contributes vhost_count points; point i of a server is
// the first four bytes, big-endian, of MD5("<ip>-<i>"), <ip> as
// net_ip2addr prints the server's address. The points are sorted by value,
// and equal values by the servers' addresses (mail_vhost_cmp, which falls
// back to net_ip_cmp: IPv4 before IPv6, then the address bytes).
//
// The user (src/lib/mail-user-hash.c, mail_user_hash, which the director
// and doveadm call with director_username_hash): the format is expanded for
// the user name (see usernameHash) and the user's hash is the first four
// bytes, big-endian, of the MD5 of the expansion.
//
// The lookup (mail-host.c, mail_host_get_by_hash_ring, with
// bsearch_insert_pos of src/lib/bsearch-insert-pos.c): a binary search for
// the user's hash over the sorted points; a point equal to it is taken where
// the search meets it, otherwise the first point above it, and past the last
// point the first one. Down servers and servers with no points are simply
// not on the ring, so their users fall to the next point.

// point is one virtual host on the ring: a hash value and its server.
type point struct {
	hash   uint32
	server int // index into Director.servers
}

// vhostPoints returns the hashes of a server's points 0..n-1
// (mail_vhost_add): MD5 of "<ip>-<i>", first four bytes big-endian.
func vhostPoints(ip string, n int) []uint32 {
	out := make([]uint32, n)
	buf := make([]byte, 0, len(ip)+12)
	for i := range n {
		buf = append(append(append(buf[:0], ip...), '-'), strconv.Itoa(i)...)
		sum := md5.Sum(buf)
		out[i] = binary.BigEndian.Uint32(sum[:4])
	}
	return out
}

// ipKey orders addresses as net_ip_cmp does: the family first (AF_INET,
// 2, before AF_INET6, 10), then the address bytes in network order.
func ipKey(a netip.Addr) []byte {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return append([]byte{0}, b[:]...)
	}
	b := a.As16()
	return append([]byte{1}, b[:]...)
}

// ringKey says which servers are on a ring: one byte per server.
func (d *Director) ringKeyLocked(backup bool, c choice) []byte {
	key := make([]byte, len(d.servers)+1)
	if backup {
		key[len(d.servers)] = 1
	}
	for i := range d.servers {
		if d.onRingLocked(i, backup, c) {
			key[i] = 1
		}
	}
	return key
}

// onRingLocked reports whether server i has points on the ring for c: the
// servers that would take new users but for their room and c.exclude, which
// Pick handles by walking on (mail_vhost_add skips down hosts; vhost_count
// 0, weight 0, drain and maintenance all mean "no new users").
func (d *Director) onRingLocked(i int, backup bool, c choice) bool {
	s := &d.servers[i]
	return s.backup == backup && (s.up || c.assumeUp) && s.admin == AdminReady && s.weight > 0 && len(s.vhosts) > 0
}

// ringLocked returns the sorted ring of the servers ringKeyLocked names,
// built once per membership and kept: servers change state rarely, and
// a ring is a few thousand points.
func (d *Director) ringLocked(backup bool, c choice) []point {
	key := d.ringKeyLocked(backup, c)
	for _, r := range d.rings {
		if bytes.Equal(r.key, key) {
			return r.points
		}
	}
	var points []point
	for i := range d.servers {
		if key[i] == 0 {
			continue
		}
		for _, h := range d.servers[i].vhosts {
			points = append(points, point{hash: h, server: i})
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return bytes.Compare(d.servers[a.server].ipKey, d.servers[b.server].ipKey)
	})
	// A handful of memberships at most (all up, one down, a backup ring);
	// forget them all when the states churn.
	if len(d.rings) >= 8 {
		d.rings = d.rings[:0]
	}
	d.rings = append(d.rings, cachedRing{key: key, points: points})
	return points
}

// cachedRing is a ring with the membership it was built for.
type cachedRing struct {
	key    []byte
	points []point
}

// ringSearch returns the index of the point the user's hash h lands on:
// Dovecot's bsearch_insert_pos with mail_vhost_hash_cmp, including where an
// equal point is met by the search, then mail_host_get_by_hash_ring's wrap
// past the last point. points must not be empty.
func ringSearch(points []point, h uint32) int {
	left, right := 0, len(points)
	for left < right {
		mid := (left + right) / 2
		switch v := points[mid].hash; {
		case v < h:
			left = mid + 1
		case v > h:
			right = mid
		default:
			return mid
		}
	}
	if left == len(points) {
		return 0
	}
	return left
}

// directorLocked places the user of c on the ring of the servers whose
// backup flag equals backup: the server of the point the user's hash lands
// on, or, when that server cannot take c (full, excluded), the next point's
// server that can. It returns -1 when none can.
func (d *Director) directorLocked(backup bool, c choice) int {
	points := d.ringLocked(backup, c)
	if len(points) == 0 {
		return -1
	}
	start := ringSearch(points, d.userHash.sum(c.hashName))
	for k := range points {
		if p := points[(start+k)%len(points)]; d.newUsersLocked(p.server, c) {
			return p.server
		}
	}
	return -1
}

// ringOrderLocked lists the servers that take new users for c in the order
// the ring offers them to the user: the one its hash lands on, then each
// next distinct server (HashOrder under BalanceDirector).
func (d *Director) ringOrderLocked(backup bool, c choice) []int {
	points := d.ringLocked(backup, c)
	if len(points) == 0 {
		return nil
	}
	start := ringSearch(points, d.userHash.sum(c.hashName))
	seen := make([]bool, len(d.servers))
	var out []int
	for k := range points {
		i := points[(start+k)%len(points)].server
		if !seen[i] && d.newUsersLocked(i, c) {
			out = append(out, i)
		}
		seen[i] = true
	}
	return out
}
