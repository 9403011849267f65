//! Routing decisions per second: a realistic header block (~1.5 KiB, several To/Cc, a Bcc,
//! folded lines, an encoded word) against Send To lists of 1, 100 and 1,000 groups. Exact
//! FromDomains are hashed and wildcards walked by suffix, so 1,000 rules should cost about what
//! one does. The scan alone is measured too, to show where the time goes.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailferry_routing::{CopyTo, Router, ScanOptions, SendTo};

const MESSAGE: &[u8] = b"Return-Path: <alice@sender.example>\r\n\
Received: from mx1.sender.example (mx1.sender.example [192.0.2.10])\r\n\
\tby mx.domain.com (Postfix) with ESMTPS id 4XyZ1q2r3s\r\n\
\tfor <joe@domain.com>; Tue, 14 May 2024 09:12:44 +0000 (UTC)\r\n\
Received: from [198.51.100.7] (unknown [198.51.100.7])\r\n\
\tby mx1.sender.example (Postfix) with ESMTPSA id 1AbC2dE3fG\r\n\
\tfor <joe@domain.com>; Tue, 14 May 2024 09:12:40 +0000 (UTC)\r\n\
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=mail;\r\n\
\tt=1715677960; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
\th=From:To:Cc:Subject:Date;\r\n\
\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSwganVzdCBiZW5jaCBmaWxsZXIgdGV4dA==\r\n\
From: \"Alice Example\" <alice@sender.example>\r\n\
To: \"Joe Bloggs\" <joe@domain.com>, \"Doe, Jane\" <jane.doe@Domain.COM>,\r\n\
 team: bob@sales.domain.com, carol@support.domain.com;,\r\n\
 =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@partner.example>\r\n\
Cc: dave@domain.com (Dave), erin@elsewhere.example, frank@domain.com,\r\n\
\tgrace@lists.example\r\n\
Bcc: heidi@domain.com\r\n\
Subject: Quarterly numbers and the offsite agenda\r\n\
Date: Tue, 14 May 2024 11:12:38 +0200\r\n\
Message-ID: <20240514091238.12345@sender.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1_4f3a2c\"\r\n\
X-Mailer: Example Mail 9.3\r\n\
List-Unsubscribe: <mailto:unsubscribe@lists.example?subject=unsubscribe>\r\n\
\r\n\
--b1_4f3a2c\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello all.\r\n--b1_4f3a2c--\r\n";

/// `n` groups; the message's domains are near the end, so a linear scan would pay for all.
fn send_to(n: usize) -> SendTo {
    let mut rules: Vec<String> = (0..n.saturating_sub(2))
        .map(|i| match i % 3 {
            0 => format!("{{customer{i}.example, customer{i}.net, postmaster@customer{i}.net}}"),
            1 => format!("{{*.branch{i}.example, hq{i}.example}}"),
            _ => format!("{{legacy{i}.example, legacy{i}.example, #KILL#}}"),
        })
        .collect();
    if n >= 2 {
        rules.push("{*.domain.com, domain.net}".to_owned());
    }
    rules.push("{domain.com, domain.net, postmaster@domain.net}".to_owned());
    SendTo::parse(&rules.join(", ")).expect("generated Send To parses")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing/decide");
    group.throughput(Throughput::Elements(1));
    for n in [1, 100, 1000] {
        let router = Router::new(
            send_to(n),
            CopyTo::parse("archive@example.org").expect("CopyTo parses"),
            ScanOptions::default(),
        );
        let probe = router.decide(MESSAGE).expect("within limits");
        assert!(probe.recipients.len() >= 6, "{probe}");
        group.bench_function(format!("{n}_rules"), |b| {
            b.iter(|| router.decide(black_box(MESSAGE)).expect("within limits"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("routing/scan");
    group.throughput(Throughput::Elements(1));
    let router = Router::new(send_to(1), CopyTo::default(), ScanOptions::default());
    group.bench_function("header_scan_only", |b| {
        b.iter(|| {
            router
                .scanner()
                .scan(black_box(MESSAGE))
                .expect("within limits")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
