/// Which addresses a company's webhook may reach (OWASP API7:2023, server-side request
/// forgery): public unicast only. Refused, in both families: unspecified, loopback,
/// private, carrier-grade NAT, link-local (the cloud metadata address 169.254.169.254
/// among them), documentation and benchmarking ranges, multicast, reserved and broadcast;
/// IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
public enum WebhookDestinationPolicy {
    /// An IPv4 (4 bytes) or IPv6 (16 bytes) address in network order.
    public static func isPublic(_ address: [UInt8]) -> Bool {
        switch address.count {
        case 4: return isPublicV4(address)
        case 16: return isPublicV6(address)
        default: return false
        }
    }

    static func isPublicV4(_ a: [UInt8]) -> Bool {
        let (b0, b1, b2) = (a[0], a[1], a[2])
        switch b0 {
        case 0, 10, 127: return false  // "this network", private, loopback
        case 100 where (64...127).contains(b1): return false  // carrier-grade NAT
        case 169 where b1 == 254: return false  // link-local, cloud metadata
        case 172 where (16...31).contains(b1): return false  // private
        case 192 where b1 == 0 && (b2 == 0 || b2 == 2): return false  // IETF assignments, TEST-NET-1
        case 192 where b1 == 88 && b2 == 99: return false  // 6to4 relay anycast
        case 192 where b1 == 168: return false  // private
        case 198 where b1 == 18 || b1 == 19: return false  // benchmarking
        case 198 where b1 == 51 && b2 == 100: return false  // TEST-NET-2
        case 203 where b1 == 0 && b2 == 113: return false  // TEST-NET-3
        case 224...255: return false  // multicast, reserved, broadcast
        default: return true
        }
    }

    static func isPublicV6(_ a: [UInt8]) -> Bool {
        let embedded = Array(a[12..<16])
        // ::/96 (unspecified, loopback, the old IPv4-compatible form) and ::ffff:0:0/96 (mapped).
        if a[0..<10].allSatisfy({ $0 == 0 }) {
            if a[10] == 0xFF && a[11] == 0xFF { return isPublicV4(embedded) }
            return false
        }
        // 64:ff9b::/96, NAT64: the IPv4 address it stands for.
        if a[0..<12].elementsEqual([0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0]) { return isPublicV4(embedded) }
        // 2002::/16, 6to4: the IPv4 address in bits 16 to 47.
        if a[0] == 0x20 && a[1] == 0x02 { return isPublicV4(Array(a[2..<6])) }
        switch a[0] {
        case 0xFC, 0xFD: return false  // unique local
        case 0xFE where a[1] & 0xC0 == 0x80: return false  // link-local
        case 0xFE where a[1] & 0xC0 == 0xC0: return false  // site-local (deprecated)
        case 0xFF: return false  // multicast
        default: break
        }
        if a[0] == 0x01 && a[1] == 0x00 && a[2..<8].allSatisfy({ $0 == 0 }) { return false }  // 100::/64, discard
        if a[0] == 0x20 && a[1] == 0x01 {
            if a[2] == 0x0D && a[3] == 0xB8 { return false }  // 2001:db8::/32, documentation
            if a[2] < 0x02 { return false }  // 2001::/23, IETF protocol assignments (Teredo among them)
        }
        // Only global unicast (2000::/3) is routed on the internet.
        return a[0] & 0xE0 == 0x20
    }
}
