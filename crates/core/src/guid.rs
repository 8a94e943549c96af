//! Stable GUIDs derived from names: the same name always gives the same GUID. The Microsoft
//! client derives its request and purchase ids from purchase keys with them (so a retry, a
//! second process or a re-run names the same call), and the emulator its directory's ids
//! from the tenant file's names. Version 8 ("custom") UUIDs from two FNV-1a hashes.

/// A GUID for `name` within `kind` (`sku`, `cart`, `purchase`, …).
pub fn guid(kind: &str, name: &str) -> String {
    let text = format!("{kind}:{}", name.to_lowercase());
    let hash = |basis: u64| {
        text.bytes().fold(basis, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (hi, lo) = (hash(0xcbf2_9ce4_8422_2325), hash(0x6c62_272e_07bb_0142));
    let hi = (hi & !0xf000) | 0x8000; // version 8
    let lo = (lo & !(0xc << 60)) | (0x8 << 60); // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// Whether `s` already looks like a GUID (then it is used as it is).
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_stable_distinct_and_well_formed() {
        let a = guid("sku", "SPB");
        assert_eq!(a, guid("sku", "spb"), "names compare case-insensitively");
        assert_ne!(a, guid("plan", "SPB"));
        assert!(is_guid(&a), "{a}");
        assert_eq!(&a[14..15], "8", "version 8");
        assert!(is_guid(&a.to_uppercase()));
    }
}
