"""An IPv6 peer on the boot link, for the router solicitation tests.

`peer.py solicit IFACE`: sends a router solicitation to ff02::2 and prints
`advertisement <source> lifetime=<s> flags=<hex> length=<n>` for each
router advertisement heard within 3 s, then `done`.
`peer.py advertise IFACE`: sends one router advertisement as a real
router would (lifetime 1800 s, a /64 prefix) to ff02::1.
"""
import socket
import struct
import sys
import time

ICMPV6 = socket.getprotobyname("ipv6-icmp")


def open_socket(iface):
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, ICMPV6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    return s, socket.if_nametoindex(iface)


def solicit(iface):
    s, index = open_socket(iface)
    s.settimeout(0.2)
    s.sendto(struct.pack("!BBHI", 133, 0, 0, 0), ("ff02::2", 0, 0, index))
    deadline = time.time() + 3
    while time.time() < deadline:
        try:
            data, addr = s.recvfrom(1500)
        except socket.timeout:
            continue
        if len(data) >= 16 and data[0] == 134:
            lifetime = struct.unpack("!H", data[6:8])[0]
            print("advertisement %s lifetime=%d flags=%02x length=%d"
                  % (addr[0], lifetime, data[5], len(data)), flush=True)
    print("done", flush=True)


def advertise(iface):
    s, index = open_socket(iface)
    prefix = socket.inet_pton(socket.AF_INET6, "2001:db8:77::")
    # Prefix information: on-link, autonomous, valid 86400, preferred 14400.
    option = struct.pack("!BBBBII4s16s", 3, 4, 64, 0xC0, 86400, 14400, b"\0" * 4, prefix)
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + option
    s.sendto(ra, ("ff02::1", 0, 0, index))
    print("sent", flush=True)


if __name__ == "__main__":
    {"solicit": solicit, "advertise": advertise}[sys.argv[1]](sys.argv[2])
