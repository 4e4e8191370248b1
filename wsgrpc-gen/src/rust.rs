//! The Rust output: prost message types, the descriptors the bridge reads
//! and writes their proto3 JSON from, and for every service the bridge's
//! dispatch table.
//!
//! The table is rendered from inside prost's service hook, so that it lands
//! in prost's file next to any other generator's output (tonic's server).
//! It names message types by their proto names only: the bridge transcodes
//! from descriptors, never through the Rust types.

use std::collections::HashSet;
use std::fmt::Write as _;

use heck::{ToShoutySnakeCase, ToSnakeCase};
use proc_macro2::TokenStream;
use prost::Message as _;
use prost_build::{Module, ServiceGenerator};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use quote::{format_ident, quote};

use crate::model::{self, MethodKind};
use crate::{Error, GeneratedFile};

/// Renders one `{package}.rs` per package of `to_generate`.
pub(crate) fn render(
    descriptors: &[FileDescriptorProto],
    to_generate: &[String],
    extra_services: Option<Box<dyn ServiceGenerator>>,
) -> Result<Vec<GeneratedFile>, Error> {
    let files: Vec<&FileDescriptorProto> = descriptors
        .iter()
        .filter(|file| to_generate.contains(&file.name().to_owned()))
        .collect();

    let mut config = prost_build::Config::new();
    config.service_generator(Box::new(BridgeGenerator {
        extra: extra_services,
    }));
    // prost needs every descriptor to decide what its types can derive;
    // only the packages asked for are kept.
    let requests = descriptors
        .iter()
        .map(|file| {
            (
                Module::from_protobuf_package_name(file.package()),
                file.clone(),
            )
        })
        .collect();
    let wanted: Vec<Module> = files
        .iter()
        .map(|file| Module::from_protobuf_package_name(file.package()))
        .collect();
    let mut messages = config
        .generate(requests)
        .map_err(|err| Error::Generate(format!("prost-build: {err}")))?;
    messages.retain(|module, _| wanted.contains(module));

    let mut out = Vec::new();
    let mut modules: Vec<Module> = messages.keys().cloned().collect();
    modules.sort();
    for module in modules {
        let package = module.parts().collect::<Vec<_>>().join(".");
        let mut content = messages.remove(&module).unwrap_or_default();
        let package_files: Vec<&FileDescriptorProto> = files
            .iter()
            .copied()
            .filter(|file| file.package() == package)
            .collect();
        if package_files.iter().any(|file| !file.service.is_empty()) {
            let set = descriptor_set(descriptors, &package_files);
            content.push_str(&descriptor_set_constant(&set.encode_to_vec()));
        }
        out.push(GeneratedFile {
            name: module.to_file_name_or("_"),
            content,
        });
    }
    Ok(out)
}

/// `files` and every file they import, directly or not, in the order of
/// `descriptors` (which lists a file after its imports), without source
/// locations: what the bridge needs to read and write their messages. The
/// well-known types (`google/protobuf/…`) are left out: the runtime has
/// its own copies, so the output does not depend on the compiler's.
fn descriptor_set(
    descriptors: &[FileDescriptorProto],
    files: &[&FileDescriptorProto],
) -> FileDescriptorSet {
    let mut needed: HashSet<&str> = HashSet::new();
    let mut pending: Vec<&str> = files.iter().map(|file| file.name()).collect();
    while let Some(name) = pending.pop() {
        if !needed.insert(name) {
            continue;
        }
        if let Some(file) = descriptors.iter().find(|file| file.name() == name) {
            pending.extend(file.dependency.iter().map(String::as_str));
        }
    }
    let file = descriptors
        .iter()
        .filter(|file| needed.contains(file.name()) && !file.name().starts_with("google/protobuf/"))
        .map(|file| FileDescriptorProto {
            source_code_info: None,
            ..file.clone()
        })
        .collect();
    FileDescriptorSet { file }
}

/// The package's descriptor set as a byte string, printable bytes as they
/// are so that the names in it can be read, broken into lines.
fn descriptor_set_constant(bytes: &[u8]) -> String {
    const LINE: usize = 96;
    let mut out = String::from(
        "/// The descriptors of this package's files and of every file they import\n\
         /// (a serialized `google.protobuf.FileDescriptorSet`): the bridge reads and\n\
         /// writes the proto3 JSON of the messages from them.\n\
         pub const FILE_DESCRIPTOR_SET: &[u8] = b\"\\\n",
    );
    let mut line = 0;
    for &byte in bytes {
        let start = out.len();
        match byte {
            b'"' | b'\\' => {
                let _ = write!(out, "\\{}", byte as char);
            }
            0x21..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
        line += out.len() - start;
        if line >= LINE {
            out.push_str("\\\n");
            line = 0;
        }
    }
    out.push_str("\";\n");
    out
}

/// Appends a bridge module to every service prost generates, after the
/// output of any other service generator (tonic's server, say).
struct BridgeGenerator {
    extra: Option<Box<dyn ServiceGenerator>>,
}

impl ServiceGenerator for BridgeGenerator {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        if let Some(extra) = &mut self.extra {
            extra.generate(service.clone(), buf);
        }
        let tokens = bridge_module(&from_prost(&service));
        let file = syn::parse2::<syn::File>(tokens).expect("the bridge module is valid Rust");
        buf.push_str(&prettyplease::unparse(&file));
    }

    fn finalize(&mut self, buf: &mut String) {
        if let Some(extra) = &mut self.extra {
            extra.finalize(buf);
        }
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        if let Some(extra) = &mut self.extra {
            extra.finalize_package(package, buf);
        }
    }
}

/// The model of a service as prost sees it.
fn from_prost(service: &prost_build::Service) -> model::Service {
    let strip = |name: &str| name.strip_prefix('.').unwrap_or(name).to_owned();
    let methods = service
        .methods
        .iter()
        .map(|method| model::Method {
            name: method.proto_name.clone(),
            kind: MethodKind::from_streaming(method.client_streaming, method.server_streaming),
            input_type: strip(&method.input_proto_type),
            output_type: strip(&method.output_proto_type),
            comments: comments(&method.comments),
        })
        .collect();
    let full_name = if service.package.is_empty() {
        service.proto_name.clone()
    } else {
        format!("{}.{}", service.package, service.proto_name)
    };
    model::Service {
        name: service.proto_name.clone(),
        full_name,
        methods,
        comments: comments(&service.comments),
    }
}

fn comments(comments: &prost_build::Comments) -> model::Comments {
    model::Comments {
        leading: comments
            .leading
            .iter()
            .map(|line| format!("{line}\n"))
            .collect(),
        trailing: comments
            .trailing
            .iter()
            .map(|line| format!("{line}\n"))
            .collect(),
    }
}

/// `pub mod {service}_bridge { … }`: the service's table for the bridge.
pub(crate) fn bridge_module(service: &model::Service) -> TokenStream {
    let module = format_ident!("{}_bridge", service.name.to_snake_case());
    let full_name = &service.full_name;
    let service_doc = doc_lines(&service.comments);
    let module_doc = format!(" The wsgrpc bridge's table for `{full_name}`.");
    let service_fn_doc =
        format!(" The table of `{full_name}`, for `wsgrpc_runtime::Bridge::builder().service(…)`.");

    let constants = service.methods.iter().map(|method| {
        let constant = format_ident!("{}", method.name.to_shouty_snake_case());
        let path = format!("{full_name}/{}", method.name);
        let doc = doc_lines(&method.comments);
        let summary = format!(" `{path}`: {}.", kind_words(method.kind));
        quote! {
            #[doc = #summary]
            #(#[doc = ""] #[doc = #doc])*
            pub const #constant: &str = #path;
        }
    });
    let methods = service.methods.iter().map(|method| {
        let (input, output) = (&method.input_type, &method.output_type);
        let name = &method.name;
        let kind = format_ident!("{}", method.kind.name());
        quote! { descriptors.method(#name, MethodKind::#kind, #input, #output) }
    });

    quote! {
        #[doc = #module_doc]
        #(#[doc = ""] #[doc = #service_doc])*
        pub mod #module {
            use wsgrpc_runtime::codegen::*;

            /// The service's fully-qualified name.
            pub const SERVICE_NAME: &str = #full_name;

            #(#constants)*

            #[doc = #service_fn_doc]
            pub fn service() -> Service {
                let descriptors = Descriptors::new(super::FILE_DESCRIPTOR_SET);
                Service::new(SERVICE_NAME, [#(#methods),*])
            }
        }
    }
}

fn kind_words(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::Unary => "unary",
        MethodKind::ServerStreaming => "server streaming",
        MethodKind::ClientStreaming => "client streaming",
        MethodKind::BidiStreaming => "bidirectional streaming",
    }
}

/// Doc comment lines, each with the leading space rustdoc expects.
fn doc_lines(comments: &model::Comments) -> Vec<String> {
    comments
        .lines()
        .iter()
        .map(|line| format!(" {line}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_constant_and_one_entry_per_method() {
        let service = model::Service {
            name: "Match".into(),
            full_name: "a.b.Match".into(),
            methods: vec![model::Method {
                name: "Self".into(),
                kind: MethodKind::BidiStreaming,
                input_type: "a.b.Self".into(),
                output_type: "google.protobuf.Empty".into(),
                comments: model::Comments {
                    leading: vec![" Plays.\n".into()],
                    trailing: vec![],
                },
            }],
            comments: model::Comments::default(),
        };
        let file = syn::parse2::<syn::File>(bridge_module(&service)).unwrap();
        let code = prettyplease::unparse(&file);
        assert!(code.contains("pub mod match_bridge {"), "{code}");
        assert!(
            code.contains(r#"pub const SELF: &str = "a.b.Match/Self";"#),
            "{code}"
        );
        assert!(code.contains("/// Plays."), "{code}");
        let entry: String = code.split_whitespace().collect();
        assert!(
            entry.contains(r#"descriptors.method("Self",MethodKind::BidiStreaming,"a.b.Self","google.protobuf.Empty",)"#),
            "{code}"
        );
    }

    #[test]
    fn the_descriptor_set_constant_is_a_byte_string_of_the_same_bytes() {
        let bytes: Vec<u8> = (0..=255).chain(b"  \"\\ x".iter().copied()).collect();
        let code = descriptor_set_constant(&bytes);
        assert!(code.lines().all(|line| line.len() <= 110), "{code}");
        let file: syn::File = syn::parse_str(&code).unwrap();
        let syn::Item::Const(constant) = &file.items[0] else {
            panic!("{code}")
        };
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::ByteStr(literal),
            ..
        }) = &*constant.expr
        else {
            panic!("{code}")
        };
        assert_eq!(literal.value(), bytes);
    }

    #[test]
    fn a_descriptor_set_holds_the_files_and_their_imports_only() {
        let file = |name: &str, deps: &[&str]| FileDescriptorProto {
            name: Some(name.into()),
            dependency: deps.iter().map(|d| d.to_string()).collect(),
            source_code_info: Some(Default::default()),
            ..Default::default()
        };
        let all = [
            file("google/protobuf/empty.proto", &[]),
            file("c.proto", &["google/protobuf/empty.proto"]),
            file("b.proto", &["c.proto"]),
            file("unrelated.proto", &[]),
            file("a.proto", &["b.proto"]),
        ];
        let set = descriptor_set(&all, &[&all[4]]);
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["c.proto", "b.proto", "a.proto"]);
        assert!(set.file.iter().all(|f| f.source_code_info.is_none()));
    }
}
