//! Any bytes as a lock blob: parsing never panics, and whatever is read as a holder reads back
//! the same after being written the way this program writes it.

#![no_main]

use deploy_lock::record::Holder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let holder = Holder::parse(data);
    let _ = (holder.describe(), holder.pipeline(), holder.build_id());
    match &holder {
        Holder::Current(record) => {
            assert_eq!(Holder::parse(&record.to_bytes()), holder);
            // Metadata goes into HTTP headers: printable ASCII only.
            for value in record.metadata().values() {
                assert!(
                    value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{value:?}"
                );
            }
        }
        Holder::Legacy {
            pipeline,
            timestamp,
            build_id,
        } => {
            let line = format!("{pipeline}|{timestamp}|{build_id}");
            assert_eq!(Holder::parse(line.as_bytes()), holder);
        }
        Holder::Unknown { why } => assert!(!why.is_empty()),
    }
});
