//! NTLM client (MS-NLMP), answering only with NTLMv2 (§3.3.2); LM and NTLMv1 are never sent.
//!
//! ntlmclient serialises the NEGOTIATE and AUTHENTICATE messages and derives NTOWFv2. The
//! server's CHALLENGE message is parsed here instead, with every offset and length checked
//! against the buffer, and the NTLMv2 response is computed here so that the client challenge and
//! the timestamp can be fixed for the MS-NLMP §4.2.4 test vectors.

use std::time::{SystemTime, UNIX_EPOCH};

use ntlmclient::{AuthenticateMessage, Flags, Message, NegotiateMessage};
use zeroize::{Zeroize, Zeroizing};

use crate::client::{ClientOptions, Credentials, hmac_md5};
use crate::{Mechanism, NtlmError, SaslError, Secret};

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// The CHALLENGE_MESSAGE header up to and including TargetInfoFields (MS-NLMP §2.2.1.2).
const HEADER_LEN: usize = 48;
/// Target information beyond this is refused: real servers send a few hundred octets, and the
/// NTLMv2 response that embeds it must fit a 16-bit length field.
pub(crate) const MAX_TARGET_INFO: usize = 8192;
/// Longest username, domain or workstation accepted, in UTF-16 code units.
const MAX_NAME: usize = 256;

const AV_EOL: u16 = 0;
const AV_TIMESTAMP: u16 = 7;
/// An AV_PAIR list holding only its terminator: AvId MsvAvEOL, AvLen 0 (MS-NLMP §2.2.2.1).
const MSV_AV_EOL: [u8; 4] = [0; 4];

/// A CHALLENGE_MESSAGE whose every field was found inside the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge<'a> {
    pub(crate) flags: u32,
    pub(crate) server_challenge: [u8; 8],
    /// The AV_PAIR list, through its MsvAvEOL; `None` when the server sent none, as Cyrus SASL
    /// does (its challenge carries only a target name).
    pub(crate) target_info: Option<&'a [u8]>,
    /// MsvAvTimestamp, if the server sent one.
    pub(crate) timestamp: Option<u64>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, NtlmError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(NtlmError::Truncated)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, NtlmError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(NtlmError::Truncated)
}

/// Resolves a (Len, MaxLen, BufferOffset) field, checked against the whole message.
fn field<'a>(msg: &'a [u8], at: usize, name: &'static str) -> Result<&'a [u8], NtlmError> {
    let len = usize::from(u16_at(msg, at)?);
    let offset = u32_at(msg, at + 4)?;
    if len == 0 {
        return Ok(&[]);
    }
    let start = usize::try_from(offset).map_err(|_| NtlmError::FieldOutOfBounds(name))?;
    // A payload that starts inside the fixed header would alias header fields.
    if start < HEADER_LEN {
        return Err(NtlmError::FieldOutOfBounds(name));
    }
    let end = start
        .checked_add(len)
        .ok_or(NtlmError::FieldOutOfBounds(name))?;
    msg.get(start..end).ok_or(NtlmError::FieldOutOfBounds(name))
}

/// Parses a CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2).
pub(crate) fn parse_challenge(msg: &[u8]) -> Result<Challenge<'_>, NtlmError> {
    if msg.len() < HEADER_LEN {
        return Err(NtlmError::Truncated);
    }
    if &msg[..8] != SIGNATURE {
        return Err(NtlmError::BadSignature);
    }
    if u32_at(msg, 8)? != 2 {
        return Err(NtlmError::NotChallenge);
    }
    // The target name is not used, but a lying offset is still a broken message.
    field(msg, 12, "TargetName")?;
    let flags = u32_at(msg, 20)?;
    if flags & Flags::NEGOTIATE_UNICODE.bits() == 0 {
        return Err(NtlmError::NoUnicode);
    }
    let mut server_challenge = [0u8; 8];
    server_challenge.copy_from_slice(&msg[24..32]);
    let info = field(msg, 40, "TargetInfo")?;
    if info.is_empty() {
        // MS-NLMP §2.2.1.2 makes TargetInfo optional (NTLMSSP_NEGOTIATE_TARGET_INFO clear), and
        // Cyrus SASL never sends it. NTLMv2 is still computed, over a bare MsvAvEOL.
        return Ok(Challenge {
            flags,
            server_challenge,
            target_info: None,
            timestamp: None,
        });
    }
    if info.len() > MAX_TARGET_INFO {
        return Err(NtlmError::BadTargetInfo);
    }
    let mut at = 0;
    let mut timestamp = None;
    loop {
        let id = u16_at(info, at).map_err(|_| NtlmError::BadTargetInfo)?;
        let len = usize::from(u16_at(info, at + 2).map_err(|_| NtlmError::BadTargetInfo)?);
        let value = info
            .get(at + 4..at + 4 + len)
            .ok_or(NtlmError::BadTargetInfo)?;
        at += 4 + len;
        match id {
            AV_EOL if len == 0 => break,
            AV_EOL => return Err(NtlmError::BadTargetInfo),
            AV_TIMESTAMP => {
                let v: [u8; 8] = value.try_into().map_err(|_| NtlmError::BadTargetInfo)?;
                timestamp = Some(u64::from_le_bytes(v));
            }
            _ => {}
        }
    }
    Ok(Challenge {
        flags,
        server_challenge,
        target_info: Some(&info[..at]),
        timestamp,
    })
}

/// The two NTLMv2 responses (MS-NLMP §3.3.2).
pub(crate) struct V2Response {
    pub(crate) nt: Vec<u8>,
    pub(crate) lm: Vec<u8>,
}

/// NTOWFv2 (MS-NLMP §3.3.2): HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(upper(user) + domain)).
pub(crate) fn ntowfv2(
    username: &str,
    domain: &str,
    password: &Secret<String>,
) -> Zeroizing<[u8; 16]> {
    let mut creds = ntlmclient::Credentials {
        username: username.to_owned(),
        password: password.expose().clone(),
        domain: domain.to_owned(),
    };
    let key = Zeroizing::new(ntlmclient::ntlm_v2_password_func(&creds));
    creds.password.zeroize();
    key
}

/// Computes NTLMv2 and LMv2 for a parsed challenge.
pub(crate) fn v2_response(
    key: &[u8; 16],
    challenge: &Challenge<'_>,
    client_challenge: [u8; 8],
    time: u64,
) -> V2Response {
    // temp = Responserversion, HiResponserversion, Z(6), Time, ClientChallenge, Z(4),
    // ServerName (the AV pairs), Z(4).
    // Without target information from the server, ServerName is the shortest well-formed
    // AV_PAIR list (§2.2.2.7: NTLMv2_CLIENT_CHALLENGE.AvPairs ends with MsvAvEOL): the server
    // HMACs the blob as received, so any well-formed list verifies.
    let server_name = challenge.target_info.unwrap_or(&MSV_AV_EOL);
    let mut temp = Vec::with_capacity(32 + server_name.len());
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&time.to_le_bytes());
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(server_name);
    temp.extend_from_slice(&[0; 4]);
    let mut proof_input = Vec::with_capacity(8 + temp.len());
    proof_input.extend_from_slice(&challenge.server_challenge);
    proof_input.extend_from_slice(&temp);
    let nt_proof = hmac_md5(key, &proof_input);
    let mut nt = Vec::with_capacity(16 + temp.len());
    nt.extend_from_slice(&nt_proof);
    nt.extend_from_slice(&temp);
    // §3.1.5.1.2: with a server timestamp, LmChallengeResponse is Z(24).
    let lm = if challenge.timestamp.is_some() {
        vec![0; 24]
    } else {
        let mut input = [0u8; 16];
        input[..8].copy_from_slice(&challenge.server_challenge);
        input[8..].copy_from_slice(&client_challenge);
        let mut lm = hmac_md5(key, &input).to_vec();
        lm.extend_from_slice(&client_challenge);
        lm
    };
    V2Response { nt, lm }
}

/// FILETIME now: tenths of a microsecond since 1601-01-01.
fn filetime_now() -> u64 {
    const UNIX_TO_1601_SECS: u64 = 11_644_473_600;
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs() + UNIX_TO_1601_SECS) * 10_000_000 + u64::from(since.subsec_nanos() / 100)
}

const OUR_FLAGS: Flags = Flags::NEGOTIATE_UNICODE
    .union(Flags::REQUEST_TARGET)
    .union(Flags::NEGOTIATE_NTLM)
    .union(Flags::NEGOTIATE_ALWAYS_SIGN)
    .union(Flags::NEGOTIATE_NTLM2_KEY)
    .union(Flags::NEGOTIATE_128BIT)
    .union(Flags::NEGOTIATE_56BIT);

enum State {
    Initial,
    SentNegotiate,
    SentAuthenticate,
    Failed,
}

pub(crate) struct Ntlm {
    username: String,
    domain: String,
    workstation: String,
    key: Zeroizing<[u8; 16]>,
    client_challenge: Option<[u8; 8]>,
    timestamp: Option<u64>,
    state: State,
}

impl Ntlm {
    pub(crate) fn new(
        creds: &Credentials,
        password: &Secret<String>,
        options: &ClientOptions,
    ) -> Result<Ntlm, SaslError> {
        for (value, field) in [
            (&creds.username, "username"),
            (&creds.ntlm_domain, "domain"),
            (&creds.ntlm_workstation, "workstation"),
        ] {
            if value.encode_utf16().count() > MAX_NAME || value.contains('\0') {
                return Err(SaslError::InvalidCredential {
                    mechanism: Mechanism::Ntlm,
                    field,
                });
            }
        }
        if creds.username.is_empty() {
            return Err(SaslError::InvalidCredential {
                mechanism: Mechanism::Ntlm,
                field: "username",
            });
        }
        Ok(Ntlm {
            username: creds.username.clone(),
            domain: creds.ntlm_domain.clone(),
            workstation: creds.ntlm_workstation.clone(),
            key: ntowfv2(&creds.username, &creds.ntlm_domain, password),
            client_challenge: options.ntlm_client_challenge,
            timestamp: options.ntlm_timestamp,
            state: State::Initial,
        })
    }

    pub(crate) fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        if !matches!(self.state, State::Initial) {
            return Ok(None);
        }
        let msg = Message::Negotiate(NegotiateMessage {
            flags: OUR_FLAGS,
            supplied_domain: String::new(),
            supplied_workstation: String::new(),
            os_version: Default::default(),
        });
        // Unicode is among OUR_FLAGS, which is the only way to_bytes can fail.
        let bytes = msg.to_bytes().map_err(|_| NtlmError::NoUnicode)?;
        self.state = State::SentNegotiate;
        Ok(Some(Secret::new(bytes)))
    }

    pub(crate) fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Initial if challenge.is_empty() => {
                self.state = State::Initial;
                self.initial_response()?
                    .ok_or(SaslError::UnexpectedChallenge)
            }
            State::SentNegotiate => {
                let out = self.authenticate(challenge)?;
                self.state = State::SentAuthenticate;
                Ok(out)
            }
            _ => Err(SaslError::UnexpectedChallenge),
        }
    }

    fn authenticate(&self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        let ch = parse_challenge(challenge)?;
        let client_challenge = match self.client_challenge {
            Some(c) => c,
            None => {
                let mut c = [0u8; 8];
                getrandom::getrandom(&mut c).map_err(|_| SaslError::Random)?;
                c
            }
        };
        let time = ch.timestamp.or(self.timestamp).unwrap_or_else(filetime_now);
        let resp = v2_response(&self.key, &ch, client_challenge, time);
        let flags = Flags::from_bits_retain(ch.flags & OUR_FLAGS.bits());
        let msg = Message::Authenticate(AuthenticateMessage {
            lm_response: resp.lm,
            ntlm_response: resp.nt,
            domain_name: self.domain.clone(),
            user_name: self.username.clone(),
            workstation_name: self.workstation.clone(),
            // No KEY_EXCH negotiated: EncryptedRandomSessionKey stays empty.
            session_key: Vec::new(),
            flags,
            os_version: Default::default(),
        });
        // flags include NEGOTIATE_UNICODE (parse_challenge required it), and every buffer is
        // bounded (MAX_TARGET_INFO, MAX_NAME) well below ntlmclient's 16-bit length limit.
        let bytes = msg.to_bytes().map_err(|_| NtlmError::NoUnicode)?;
        Ok(Secret::new(bytes))
    }

    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.state, State::SentAuthenticate)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ClientSession;
    use proptest::prelude::*;

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// MS-NLMP §4.2.4.3: the CHALLENGE_MESSAGE of the NTLMv2 example, as printed there.
    pub(crate) fn ms_nlmp_challenge() -> Vec<u8> {
        unhex(
            "4e544c4d53535000 02000000 0c000c00 38000000 33828ae2 0123456789abcdef
             0000000000000000 24002400 44000000 060070170000000f
             530065007200760065007200
             02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000",
        )
    }

    #[test]
    fn ms_nlmp_4_2_4_ntowfv2() {
        let key = ntowfv2("User", "Domain", &Secret::from("Password"));
        assert_eq!(
            crate::client::hex(&key[..]),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
        // The user name is case-insensitive, the domain is not.
        assert_eq!(*ntowfv2("USER", "Domain", &Secret::from("Password")), *key);
        assert_ne!(*ntowfv2("User", "DOMAIN", &Secret::from("Password")), *key);
    }

    #[test]
    fn ms_nlmp_4_2_4_challenge_parses() {
        let msg = ms_nlmp_challenge();
        assert_eq!(msg.len(), 0x44 + 0x24);
        let ch = parse_challenge(&msg).unwrap();
        assert_eq!(
            ch.server_challenge,
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(ch.flags, 0xe28a_8233);
        assert_eq!(ch.timestamp, None);
        assert_eq!(ch.target_info, Some(&msg[0x44..]));
    }

    #[test]
    fn ms_nlmp_4_2_4_2_ntlmv2_and_lmv2_responses() {
        let msg = ms_nlmp_challenge();
        let ch = parse_challenge(&msg).unwrap();
        let key = ntowfv2("User", "Domain", &Secret::from("Password"));
        let r = v2_response(&key, &ch, [0xaa; 8], 0);
        assert_eq!(
            crate::client::hex(&r.lm),
            "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            crate::client::hex(&r.nt),
            "68cd0ab851e51c96aabc927bebef6a1c\
             01010000000000000000000000000000aaaaaaaaaaaaaaaa00000000\
             02000c0044006f006d00610069006e0001000c005300650072007600650072000000000000000000"
        );
    }

    #[test]
    fn full_exchange_embeds_the_ntlmv2_response() {
        let creds = Credentials::new("User")
            .with_password("Password")
            .with_ntlm_domain("Domain")
            .with_ntlm_workstation("COMPUTER");
        let options = ClientOptions {
            ntlm_client_challenge: Some([0xaa; 8]),
            ntlm_timestamp: Some(0),
            ..ClientOptions::default()
        };
        let mut s = ClientSession::new(Mechanism::Ntlm, &creds, &options).unwrap();
        let t1 = s.initial_response().unwrap().unwrap();
        assert_eq!(&t1.expose()[..12], b"NTLMSSP\0\x01\0\0\0");
        let t3 = s.step(&ms_nlmp_challenge()).unwrap();
        let t3 = t3.expose();
        assert!(s.is_complete());
        assert_eq!(&t3[..12], b"NTLMSSP\0\x03\0\0\0");
        // NtChallengeResponseFields at offset 20: Len, MaxLen, Offset.
        let len = usize::from(u16::from_le_bytes([t3[20], t3[21]]));
        let off = u32::from_le_bytes([t3[24], t3[25], t3[26], t3[27]]) as usize;
        assert_eq!(
            crate::client::hex(&t3[off..off + 16]),
            "68cd0ab851e51c96aabc927bebef6a1c"
        );
        assert_eq!(len, 16 + 28 + 0x24 + 4);
        // LmChallengeResponseFields at offset 12.
        let off = u32::from_le_bytes([t3[16], t3[17], t3[18], t3[19]]) as usize;
        assert_eq!(
            crate::client::hex(&t3[off..off + 24]),
            "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
        );
        assert_eq!(s.step(b"").err(), Some(SaslError::UnexpectedChallenge));
    }

    /// The CHALLENGE_MESSAGE Postfix 3.7 + Cyrus SASL 2.1.28 sent in answer to our NEGOTIATE
    /// (captured on loopback): flags 0x00028205 (Unicode, RequestTarget, NTLM, AlwaysSign,
    /// TargetTypeServer; no extended session security, no TargetInfo), TargetInfoFields zero,
    /// TargetName "LOCALHOST".
    pub(crate) fn cyrus_challenge() -> Vec<u8> {
        unhex(
            "4e544c4d53535000 02000000 12001200 30000000 05820200 7964c249965cfdd1
             0000000000000000 00000000 00000000
             4c004f00430041004c0048004f0053005400",
        )
    }

    #[test]
    fn cyrus_challenge_without_target_info_or_ess_parses() {
        let msg = cyrus_challenge();
        let ch = parse_challenge(&msg).unwrap();
        assert_eq!(ch.flags, 0x0002_8205);
        assert_eq!(ch.flags & Flags::NEGOTIATE_NTLM2_KEY.bits(), 0);
        assert_eq!(
            ch.server_challenge,
            [0x79, 0x64, 0xc2, 0x49, 0x96, 0x5c, 0xfd, 0xd1]
        );
        assert_eq!(ch.target_info, None);
        assert_eq!(ch.timestamp, None);
        // A zero-length TargetInfo is absent whatever its offset says (§2.2.1.2: the offset is
        // only meaningful with a length).
        let mut m = msg.clone();
        m[44..48].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        assert_eq!(parse_challenge(&m).unwrap().target_info, None);
    }

    #[test]
    fn ntlmv2_without_target_info_known_answer() {
        // Expected values computed independently (Python hmac/hashlib) from the §4.2.4.1.1
        // NTOWFv2 key, Cyrus's server challenge, client challenge 0xaa * 8 and time 0; the AV
        // list inside the blob is a lone MsvAvEOL.
        let msg = cyrus_challenge();
        let ch = parse_challenge(&msg).unwrap();
        let key = ntowfv2("User", "Domain", &Secret::from("Password"));
        let r = v2_response(&key, &ch, [0xaa; 8], 0);
        assert_eq!(
            crate::client::hex(&r.nt),
            "1f6284d0bc956044a48dcd572909683b\
             01010000000000000000000000000000aaaaaaaaaaaaaaaa00000000\
             00000000\
             00000000"
        );
        // No server timestamp, so the LM slot carries LMv2 (§3.3.2), never LM.
        assert_eq!(
            crate::client::hex(&r.lm),
            "d9c206f689ba48864d09e24af9c38074aaaaaaaaaaaaaaaa"
        );
    }

    #[test]
    fn cyrus_exchange_answers_with_ntlmv2() {
        let creds = Credentials::new("User")
            .with_password("Password")
            .with_ntlm_domain("Domain");
        let options = ClientOptions {
            ntlm_client_challenge: Some([0xaa; 8]),
            ntlm_timestamp: Some(0),
            ..ClientOptions::default()
        };
        let mut s = ClientSession::new(Mechanism::Ntlm, &creds, &options).unwrap();
        // Cyrus is client-first: without SASL-IR the server's first challenge is empty, and
        // the NEGOTIATE message answers it; the CHALLENGE comes next.
        let t1 = s.step(b"").unwrap();
        assert_eq!(&t1.expose()[..12], b"NTLMSSP\0\x01\0\0\0");
        let t3 = s.step(&cyrus_challenge()).unwrap();
        let t3 = t3.expose();
        assert!(s.is_complete());
        assert_eq!(&t3[..12], b"NTLMSSP\0\x03\0\0\0");
        let nt_len = usize::from(u16::from_le_bytes([t3[20], t3[21]]));
        let nt_off = u32::from_le_bytes([t3[24], t3[25], t3[26], t3[27]]) as usize;
        // NTProofStr + 28-octet blob header + MsvAvEOL + Z(4): NTLMv2, not the 24-octet NTLMv1.
        assert_eq!(nt_len, 16 + 28 + 4 + 4);
        assert_eq!(
            crate::client::hex(&t3[nt_off..nt_off + 16]),
            "1f6284d0bc956044a48dcd572909683b"
        );
        let lm_off = u32::from_le_bytes([t3[16], t3[17], t3[18], t3[19]]) as usize;
        assert_eq!(
            crate::client::hex(&t3[lm_off..lm_off + 24]),
            "d9c206f689ba48864d09e24af9c38074aaaaaaaaaaaaaaaa"
        );
        // Only flags both sides hold: the server granted no extended session security.
        let flags = u32::from_le_bytes([t3[60], t3[61], t3[62], t3[63]]);
        assert_eq!(flags & Flags::NEGOTIATE_NTLM2_KEY.bits(), 0);
        assert_ne!(flags & Flags::NEGOTIATE_UNICODE.bits(), 0);
    }

    #[test]
    fn server_timestamp_is_used_and_lm_is_zero() {
        let mut msg = ms_nlmp_challenge();
        // Replace the AV list by MsvAvTimestamp + EOL and fix up TargetInfoFields.
        msg.truncate(0x44);
        let av = unhex("0700 0800 0102030405060708 0000 0000");
        msg[40..42].copy_from_slice(&(av.len() as u16).to_le_bytes());
        msg.extend(&av);
        let ch = parse_challenge(&msg).unwrap();
        assert_eq!(ch.timestamp, Some(0x0807_0605_0403_0201));
        let key = ntowfv2("User", "Domain", &Secret::from("Password"));
        let r = v2_response(&key, &ch, [0xaa; 8], ch.timestamp.unwrap());
        assert_eq!(r.lm, vec![0; 24]);
        assert_eq!(&r.nt[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn malformed_challenges_table() {
        let good = ms_nlmp_challenge();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = good.clone();
            f(&mut m);
            m
        };
        let table: Vec<(Vec<u8>, NtlmError)> = vec![
            (vec![], NtlmError::Truncated),
            (good[..47].to_vec(), NtlmError::Truncated),
            (
                good[..0x44 + 0x23].to_vec(),
                NtlmError::FieldOutOfBounds("TargetInfo"),
            ),
            (with(&|m| m[0] = b'X'), NtlmError::BadSignature),
            (with(&|m| m[8] = 3), NtlmError::NotChallenge),
            (with(&|m| m[20] &= !1), NtlmError::NoUnicode),
            // TargetName offset past the end.
            (
                with(&|m| m[16..20].copy_from_slice(&200u32.to_le_bytes())),
                NtlmError::FieldOutOfBounds("TargetName"),
            ),
            // TargetName pointing into the header.
            (
                with(&|m| m[16..20].copy_from_slice(&8u32.to_le_bytes())),
                NtlmError::FieldOutOfBounds("TargetName"),
            ),
            // Offset + length overflowing 32 bits.
            (
                with(&|m| m[44..48].copy_from_slice(&u32::MAX.to_le_bytes())),
                NtlmError::FieldOutOfBounds("TargetInfo"),
            ),
            (
                with(&|m| m[40..42].copy_from_slice(&0xffffu16.to_le_bytes())),
                NtlmError::FieldOutOfBounds("TargetInfo"),
            ),
            // Last AV_PAIR (EOL) dropped: the list has no terminator.
            (
                with(&|m| {
                    m.truncate(m.len() - 4);
                    m[40..42].copy_from_slice(&0x20u16.to_le_bytes());
                }),
                NtlmError::BadTargetInfo,
            ),
            // First AV_PAIR claims more than the list holds.
            (with(&|m| m[0x46] = 0x40), NtlmError::BadTargetInfo),
            // EOL with a length.
            (
                with(&|m| {
                    let n = m.len();
                    m[n - 2] = 1;
                }),
                NtlmError::BadTargetInfo,
            ),
            // A timestamp of the wrong size.
            (with(&|m| m[0x44] = 7), NtlmError::BadTargetInfo),
        ];
        for (i, (msg, err)) in table.iter().enumerate() {
            assert_eq!(parse_challenge(msg), Err(*err), "case {i}");
            let creds = Credentials::new("u").with_password("p");
            let mut s =
                ClientSession::new(Mechanism::Ntlm, &creds, &ClientOptions::default()).unwrap();
            s.initial_response().unwrap();
            assert_eq!(s.step(msg).err(), Some(SaslError::Ntlm(*err)), "case {i}");
        }
    }

    #[test]
    fn never_sends_lm_or_ntlmv1() {
        // An NTLMv1 response is 24 octets; NTLMv2 is longer. The LM slot carries LMv2 or zeros.
        let msg = ms_nlmp_challenge();
        let creds = Credentials::new("User").with_password("Password");
        let mut s = ClientSession::new(Mechanism::Ntlm, &creds, &ClientOptions::default()).unwrap();
        s.initial_response().unwrap();
        let t3 = s.step(&msg).unwrap();
        let t3 = t3.expose();
        let nt_len = u16::from_le_bytes([t3[20], t3[21]]);
        assert!(nt_len > 24);
        let lm_len = u16::from_le_bytes([t3[12], t3[13]]);
        assert_eq!(lm_len, 24);
        // The LM slot is LMv2: an HMAC over both challenges followed by the client challenge,
        // never the DES-based LM response.
        let lm_off = u32::from_le_bytes([t3[16], t3[17], t3[18], t3[19]]) as usize;
        let nt_off = u32::from_le_bytes([t3[24], t3[25], t3[26], t3[27]]) as usize;
        let client_challenge = &t3[nt_off + 32..nt_off + 40];
        assert_eq!(&t3[lm_off + 16..lm_off + 24], client_challenge);
        let key = ntowfv2("User", "", &Secret::from("Password"));
        let mut input = vec![0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        input.extend_from_slice(client_challenge);
        assert_eq!(&t3[lm_off..lm_off + 16], &hmac_md5(&key[..], &input));
    }

    #[test]
    fn oversized_names_are_refused() {
        let creds = Credentials::new("u")
            .with_password("p")
            .with_ntlm_workstation("w".repeat(257));
        assert_eq!(
            ClientSession::new(Mechanism::Ntlm, &creds, &ClientOptions::default()).map(|_| ()),
            Err(SaslError::InvalidCredential {
                mechanism: Mechanism::Ntlm,
                field: "workstation"
            })
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_stays_in_bounds(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut msg = b"NTLMSSP\0\x02\0\0\0".to_vec();
            msg.extend(&tail);
            if let Ok(Challenge { target_info: Some(info), .. }) = parse_challenge(&msg) {
                prop_assert!(info.len() <= msg.len());
                prop_assert!(info.ends_with(&[0, 0, 0, 0]));
            }
        }
    }
}
