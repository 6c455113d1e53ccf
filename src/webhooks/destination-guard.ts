/**
 * SSRF guard: which addresses a webhook may connect to. Loopback, private, shared
 * (CGNAT), link-local (with the cloud metadata address 169.254.169.254), multicast,
 * reserved and unspecified ranges are refused, in IPv4 and IPv6 (an IPv4-mapped IPv6
 * address is judged by its IPv4 address).
 *
 * The check runs where the socket connects: `guardedLookup` is the `lookup` of every
 * outgoing request, so the address checked is the address connected to. A name that
 * resolved to a public address when it was checked and to 127.0.0.1 a moment later
 * (DNS rebinding) cannot slip through: there is no "later". Node does not call `lookup`
 * for an IP literal, so `refusedLiteral` checks the URL's host before the request.
 */
import dns from 'node:dns';
import net from 'node:net';

const BLOCKED = new net.BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", and 0.0.0.0 itself reaches the local host
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // shared address space (CGNAT; 100.100.100.200 is a cloud metadata address)
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and 255.255.255.255
] as const) {
  BLOCKED.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96], // NAT64: reaches IPv4 addresses, private ones included
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7], // unique local (fd00:ec2::254 is a cloud metadata address)
  ['fe80::', 10], // link-local
  ['fec0::', 10],
  ['ff00::', 8], // multicast
] as const) {
  BLOCKED.addSubnet(network, prefix, 'ipv6');
}

const MAPPED_IPV4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** Whether a webhook may not connect to this IP address. */
export function isRefusedAddress(address: string): boolean {
  const mapped = MAPPED_IPV4.exec(address);
  if (mapped) return isRefusedAddress(mapped[1]!);
  const family = net.isIP(address);
  if (family === 0) return true;
  return BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export class DestinationRefusedError extends Error {
  override name = 'DestinationRefusedError';
  readonly code = 'WEBHOOK_DESTINATION_REFUSED';
  constructor(readonly host: string, readonly address: string) {
    super(`destination ${host} (${address}) is in a loopback, private, link-local or reserved range; refused (WEBHOOK_ALLOW_PRIVATE=true allows it)`);
  }
}

/** The refused address when `hostname` (a URL's host, IPv6 in brackets or not) is an IP literal in a refused range. */
export function refusedLiteral(hostname: string): string | undefined {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return net.isIP(bare) !== 0 && isRefusedAddress(bare) ? bare : undefined;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/**
 * A `lookup` for `http.request`: resolves like `dns.lookup`, then fails the connection with
 * `DestinationRefusedError` when any address the name resolves to is refused (a name with
 * one private address among public ones is refused: which one is connected to is Node's choice).
 */
export function guardedLookup(hostname: string, options: dns.LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const refused = addresses.find((a) => isRefusedAddress(a.address));
    if (refused) return callback(Object.assign(new DestinationRefusedError(hostname, refused.address), { errno: undefined }) as NodeJS.ErrnoException, []);
    if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} resolved to no address`), { code: 'ENOTFOUND' }), []);
    if (options.all) return callback(null, addresses);
    const first = addresses[0]!;
    callback(null, first.address, first.family);
  });
}
