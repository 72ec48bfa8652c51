//! CreateAcls and DeleteAcls as the active controller decides them (Kafka's
//! `AclControlManager`): each binding or filter gets its own answer, and the records of
//! every accepted one commit together.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::ControllerError;
use crate::acl::{AclBinding, AclBindingFilter};
use crate::image::MetadataImage;
use crate::record::MetadataRecord;

/// The records creating `acls`, and per binding (in request order) whether it was refused.
/// A binding that exists already, or twice in the request, succeeds without a second record,
/// as in Kafka. `new_id` names each new binding (random in the controller, fixed in tests).
pub fn create_acls(
    image: &MetadataImage,
    acls: &[AclBinding],
    mut new_id: impl FnMut() -> Uuid,
) -> (Vec<MetadataRecord>, Vec<Result<(), ControllerError>>) {
    let mut existing: BTreeSet<&AclBinding> = image.acls.values().collect();
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(acls.len());
    for acl in acls {
        if let Some(why) = acl.invalid() {
            results.push(Err(ControllerError::InvalidRequest(why)));
            continue;
        }
        if existing.insert(acl) {
            let id = loop {
                let id = new_id();
                if !image.acls.contains_key(&id) {
                    break id;
                }
            };
            records.push(MetadataRecord::AccessControlEntry {
                id,
                acl: acl.clone(),
            });
        }
        results.push(Ok(()));
    }
    (records, results)
}

/// The records deleting what `filters` select, and per filter (in request order) the
/// bindings it selected or why it was refused. A binding two filters select is removed once
/// and reported by both, as in Kafka.
#[allow(clippy::type_complexity)]
pub fn delete_acls(
    image: &MetadataImage,
    filters: &[AclBindingFilter],
) -> (
    Vec<MetadataRecord>,
    Vec<Result<Vec<AclBinding>, ControllerError>>,
) {
    let mut removed = BTreeSet::new();
    let mut results = Vec::with_capacity(filters.len());
    for filter in filters {
        if let Some(why) = filter.invalid() {
            results.push(Err(ControllerError::InvalidRequest(why)));
            continue;
        }
        let mut deleted = Vec::new();
        for (id, acl) in &image.acls {
            if filter.matches(acl) {
                removed.insert(*id);
                deleted.push(acl.clone());
            }
        }
        results.push(Ok(deleted));
    }
    let records = removed
        .into_iter()
        .map(|id| MetadataRecord::RemoveAccessControlEntry { id })
        .collect();
    (records, results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};

    fn acl(name: &str, principal: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: principal.into(),
            host: "*".into(),
            operation: AclOperation::Write,
            permission: AclPermissionType::Allow,
        }
    }

    fn ids() -> impl FnMut() -> Uuid {
        let mut n = 0u128;
        move || {
            n += 1;
            Uuid::from_u128(n)
        }
    }

    fn applied(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut next = image.clone();
        next.apply(&MetadataRecord::Batch(records.to_vec()))
            .expect("applies");
        next
    }

    #[test]
    fn valid_bindings_are_created_once_and_invalid_ones_refused_alone() {
        let image = MetadataImage::default();
        let bad = AclBinding {
            pattern_type: PatternType::Match,
            ..acl("t", "User:alice")
        };
        let wanted = [acl("t", "User:alice"), bad, acl("t", "User:alice")];
        let (records, results) = create_acls(&image, &wanted, ids());
        assert_eq!(
            records,
            vec![MetadataRecord::AccessControlEntry {
                id: Uuid::from_u128(1),
                acl: acl("t", "User:alice"),
            }]
        );
        assert_eq!(results[0], Ok(()));
        assert!(matches!(
            results[1],
            Err(ControllerError::InvalidRequest(_))
        ));
        assert_eq!(results[2], Ok(()));
        let image = applied(&image, &records);
        // Creating it again changes nothing and succeeds.
        let (again, results) = create_acls(&image, &[acl("t", "User:alice")], ids());
        assert!(again.is_empty());
        assert_eq!(results, vec![Ok(())]);
    }

    #[test]
    fn an_id_in_use_is_never_reused() {
        let image = MetadataImage::default();
        let (records, _) = create_acls(&image, &[acl("a", "User:x")], ids());
        let image = applied(&image, &records);
        let (records, _) = create_acls(&image, &[acl("b", "User:x")], ids());
        assert!(matches!(
            records[..],
            [MetadataRecord::AccessControlEntry { id, .. }] if id == Uuid::from_u128(2)
        ));
    }

    #[test]
    fn deletes_remove_what_each_filter_selects_once() {
        let image = MetadataImage::default();
        let (records, _) = create_acls(
            &image,
            &[acl("a", "User:x"), acl("b", "User:x"), acl("a", "User:y")],
            ids(),
        );
        let image = applied(&image, &records);
        let by_name = AclBindingFilter {
            resource_name: Some("a".into()),
            ..AclBindingFilter::any()
        };
        let by_principal = AclBindingFilter {
            principal: Some("User:x".into()),
            ..AclBindingFilter::any()
        };
        let unknown = AclBindingFilter {
            operation: AclOperation::Unknown,
            ..AclBindingFilter::any()
        };
        let (records, results) = delete_acls(&image, &[by_name, by_principal, unknown]);
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(results[0].as_ref().map(Vec::len), Ok(2));
        assert_eq!(results[1].as_ref().map(Vec::len), Ok(2));
        assert!(matches!(
            results[2],
            Err(ControllerError::InvalidRequest(_))
        ));
        let image = applied(&image, &records);
        assert!(image.acls.is_empty());
    }

    #[test]
    fn the_image_refuses_an_unknown_removal_and_an_invalid_entry() {
        let mut image = MetadataImage::default();
        assert!(image
            .apply(&MetadataRecord::RemoveAccessControlEntry { id: Uuid::nil() })
            .is_err());
        let bad = AclBinding {
            operation: AclOperation::Any,
            ..acl("t", "User:x")
        };
        assert!(image
            .apply(&MetadataRecord::AccessControlEntry {
                id: Uuid::nil(),
                acl: bad
            })
            .is_err());
        assert!(image.acls.is_empty());
    }
}
