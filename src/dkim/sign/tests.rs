use super::*;
use crate::dkim::keys::generate;
use crate::dkim::state::{self, State};

/// A root with keys for `domain` under `selector` (Ed25519).
fn with_key(root: &Path, domain: &str, selector: &str) {
    let dir = keys::domain_dir(root, domain);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        keys::key_path(root, domain, selector),
        generate(Algorithm::Ed25519).unwrap(),
    )
    .unwrap();
    let mut st = keys::read_state(root, domain).unwrap().unwrap_or_default();
    st.rotate(selector.to_string(), 0);
    std::fs::write(keys::state_path(root, domain), state::write(&st, domain)).unwrap();
}

/// A tag's value from a DKIM-Signature field, folding white space removed.
fn tag(header: &str, name: &str) -> Option<String> {
    let unfolded: String = header.split_whitespace().collect();
    let start = unfolded.find(&format!(";{name}="))? + name.len() + 2;
    let end = unfolded[start..]
        .find(';')
        .map_or(unfolded.len(), |e| start + e);
    Some(unfolded[start..end].to_string())
}

const MSG: &[u8] = b"From: Joe <joe@example.net>\nTo: ann@example.org\nSubject: hi\n\nbody\n";

#[test]
fn signs_with_the_from_domains_key() {
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "one");
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    let signed = s.sign_detailed(MSG).unwrap().unwrap();
    assert_eq!(signed.domain, "example.net");
    assert_eq!(signed.selector, "one");
    let h = String::from_utf8(signed.header).unwrap();
    assert!(h.starts_with(
        "DKIM-Signature: v=1; a=ed25519-sha256; s=one; d=example.net; c=relaxed/relaxed;"
    ));
    assert!(h.ends_with('\n') && !h.contains('\r'));
    assert!(h.lines().skip(1).all(|l| l.starts_with('\t')), "{h}");
    let fields = tag(&h, "h").unwrap().to_ascii_lowercase();
    assert_eq!(
        fields.split(':').filter(|f| *f == "from").count(),
        2,
        "{fields}"
    );
    assert!(fields.contains("message-id"));
}

#[test]
fn no_key_means_no_signature() {
    let d = tempfile::tempdir().unwrap();
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    assert!(s.sign(MSG).unwrap().is_none());
    with_key(d.path(), "example.org", "one");
    assert!(s.sign(MSG).unwrap().is_none());
    assert_eq!(Outcome::of(&s.sign(MSG)), Outcome::NoKey);
}

#[test]
fn a_parent_domain_signs_for_its_subdomains_but_not_the_reverse() {
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "top");
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    let m = b"From: a@mail.eu.example.net\n\nx\n";
    let signed = s.sign_detailed(m).unwrap().unwrap();
    assert_eq!(signed.domain, "example.net");
    with_key(d.path(), "eu.example.net", "eu");
    assert_eq!(
        s.sign_detailed(m).unwrap().unwrap().domain,
        "eu.example.net"
    );
    let up = b"From: a@net\n\nx\n";
    assert!(s.sign(up).unwrap().is_none());
}

#[test]
fn a_rotation_is_picked_up_by_the_next_message() {
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "one");
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    assert_eq!(s.sign_detailed(MSG).unwrap().unwrap().selector, "one");
    with_key(d.path(), "example.net", "two");
    assert_eq!(s.sign_detailed(MSG).unwrap().unwrap().selector, "two");
    let st = keys::read_state(d.path(), "example.net").unwrap().unwrap();
    assert_eq!(st.retired[0].selector, "one");
    // Removed keys sign nothing.
    std::fs::remove_file(keys::state_path(d.path(), "example.net")).unwrap();
    assert!(s.sign(MSG).unwrap().is_none());
}

#[test]
fn broken_keys_are_errors_not_silence() {
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "one");
    std::fs::write(keys::key_path(d.path(), "example.net", "one"), b"junk").unwrap();
    let st = State {
        active: Some("one".into()),
        retired: vec![],
    };
    // A new stamp (size differs) makes it reload.
    std::fs::write(
        keys::state_path(d.path(), "example.net"),
        [state::write(&st, "example.net"), b"\n".to_vec()].concat(),
    )
    .unwrap();
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    let r = s.sign(MSG);
    assert!(matches!(r, Err(DkimError::Key { .. })), "{r:?}");
    assert_eq!(Outcome::of(&r), Outcome::Failed);
    std::fs::write(keys::state_path(d.path(), "example.net"), b"bogus\n").unwrap();
    assert!(matches!(s.sign(MSG), Err(DkimError::Key { .. })));
}

#[test]
fn malformed_messages_say_why() {
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "one");
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    for m in [
        &b"To: a@b\n\nx\n"[..],
        b"From: a@example.net\nFrom: b@example.net\n\nx\n",
        b"From: a@[192.0.2.1]\n\nx\n",
        b"From: a@example.net\nbroken line\n\nx\n",
    ] {
        let r = s.sign(m);
        assert_eq!(Outcome::of(&r), Outcome::Malformed, "{r:?}");
    }
}

#[test]
fn crlf_and_lf_forms_sign_alike() {
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "one");
    let s = Signer::with_recheck(d.path(), Duration::ZERO);
    let lf = s.sign(MSG).unwrap().unwrap();
    let crlf: Vec<u8> = String::from_utf8_lossy(MSG)
        .replace('\n', "\r\n")
        .into_bytes();
    let other = s.sign(&crlf).unwrap().unwrap();
    let bh = |h: &[u8]| tag(&String::from_utf8_lossy(h), "bh");
    assert_eq!(bh(&lf), bh(&other));
}

#[test]
fn the_signer_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Signer>();
    let d = tempfile::tempdir().unwrap();
    with_key(d.path(), "example.net", "one");
    let s = Arc::new(Signer::with_recheck(d.path(), Duration::ZERO));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.sign(MSG).unwrap().is_some())
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
}

#[test]
fn a_selectors_file_is_looked_at_once_per_recheck_interval() {
    let d = tempfile::tempdir().unwrap();
    let s = Signer::with_recheck(d.path(), Duration::from_secs(3600));
    assert!(s.sign(MSG).unwrap().is_none());
    with_key(d.path(), "example.net", "one");
    // Remembered as keyless for the interval: no stat per message.
    assert!(s.sign(MSG).unwrap().is_none());
    // A signer whose interval has passed finds it.
    let fresh = Signer::with_recheck(d.path(), Duration::ZERO);
    assert_eq!(fresh.sign_detailed(MSG).unwrap().unwrap().selector, "one");
    // The default is short: keys made by the operator are in use within a second.
    assert_eq!(RECHECK, Duration::from_secs(1));
}
