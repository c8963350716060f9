//! The per-host template a JS script's component is assembled from, and
//! the byte surgery that assembles it.
//!
//! The seed (componentize-js's own component for a one-line script, made by
//! `make js-engine`) is taken apart once, at start:
//!
//! - its main core module — SpiderMonkey, ~10 MB of code, identical for
//!   every script — becomes the **engine code module**: the same module
//!   with its memory *imported* (from `__berth_memory`) instead of defined,
//!   and no data. The host compiles it once and provides it to every JS
//!   component as a core-module import named [`Template::import_name`];
//! - the rest of the component is kept as a **prefix** and a **suffix**
//!   around the small `wit-component` shim module, with the main module's
//!   section replaced by that import and its instantiation given the shim's
//!   instance as `__berth_memory`.
//!
//! Per script, only the shim changes: it gains the memory (the size the
//! snapshot reached) and the snapshot's data segments. So a new script
//! compiles a few small modules, never the engine. [`Template::standalone`]
//! instead rebuilds exactly what componentize-js would have produced
//! (every section but the main module's memory and data is the seed's), for
//! export and for the test that pins the two pipelines together.
//!
//! Must never: change an index space of the component (the main module and
//! shim keep their places), or accept a seed or snapshot whose shape it did
//! not check.

use std::ops::Range;

use sha2::{Digest, Sha256};
use wasm_encoder::{
    ComponentImportSection, ComponentSection, ComponentTypeRef, CoreTypeSection, Encode,
    EntityType, ModuleArg, ModuleType,
};
use wasmparser::{BinaryReader, DataKind, Instance, Operator, Payload, TypeRef};

/// Why the engine directory cannot be used (found at start, never per
/// script).
#[derive(Debug, thiserror::Error)]
#[error("JS engine seed: {0}")]
pub struct TemplateError(pub String);

fn bad(message: impl Into<String>) -> TemplateError {
    TemplateError(message.into())
}

/// The module name the engine code module imports its memory from.
pub const MEMORY_MODULE: &str = "__berth_memory";

/// One section of a binary: its id, the whole section and its payload.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub id: u8,
    pub whole: Range<usize>,
    pub payload: Range<usize>,
}

fn read_leb_u32(bytes: &[u8], at: &mut usize) -> Result<u32, TemplateError> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at).ok_or_else(|| bad("truncated LEB128"))?;
        *at += 1;
        result |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| bad("LEB128 overflows u32"));
        }
    }
    Err(bad("LEB128 too long"))
}

fn leb(value: u32, out: &mut Vec<u8>) {
    value.encode(out);
}

/// The top-level sections of a core module or component (after the
/// 8-byte header).
pub(crate) fn sections(bytes: &[u8]) -> Result<Vec<Section>, TemplateError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(bad("not a WebAssembly binary"));
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let size = read_leb_u32(bytes, &mut at)? as usize;
        let end = at
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("section runs past the end"))?;
        out.push(Section {
            id,
            whole: start..end,
            payload: at..end,
        });
        at = end;
    }
    Ok(out)
}

/// A custom section's name and contents.
pub(crate) fn custom_name(payload: &[u8]) -> Option<(&str, &[u8])> {
    let mut at = 0;
    let len = read_leb_u32(payload, &mut at).ok()? as usize;
    let name = std::str::from_utf8(payload.get(at..at.checked_add(len)?)?).ok()?;
    Some((name, &payload[at + len..]))
}

fn section_bytes(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    out.push(id);
    leb(payload.len() as u32, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A vector section's payload with `extra` entries appended (each already
/// encoded): the count grows, the old entries are kept byte for byte.
fn append_entries(payload: &[u8], extra: &[Vec<u8>]) -> Result<Vec<u8>, TemplateError> {
    let mut at = 0;
    let count = read_leb_u32(payload, &mut at)?;
    let mut out = Vec::with_capacity(payload.len() + 32);
    leb(count + extra.len() as u32, &mut out);
    out.extend_from_slice(&payload[at..]);
    for entry in extra {
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Core module section ids.
mod id {
    pub const CUSTOM: u8 = 0;
    pub const IMPORT: u8 = 2;
    pub const TABLE: u8 = 4;
    pub const MEMORY: u8 = 5;
    pub const EXPORT: u8 = 7;
    pub const CODE: u8 = 10;
    pub const DATA: u8 = 11;
    pub const DATA_COUNT: u8 = 12;
    pub const GLOBAL: u8 = 6;
}

/// Component section ids.
mod cid {
    pub const CORE_MODULE: u8 = 1;
    pub const CORE_INSTANCE: u8 = 2;
    pub const CORE_TYPE: u8 = 3;
}

/// What a snapshot contributes to a script's component: the memory size it
/// reached and its non-zero contents.
#[derive(Debug)]
pub struct SnapshotImage {
    /// Wasm pages (64 KiB) of the snapshot's memory.
    pub pages: u32,
    /// Active data segments: offset and bytes.
    pub segments: Vec<(u32, Range<usize>)>,
    /// The snapshot module the segments point into.
    pub module: Vec<u8>,
    /// The snapshot's raw memory, data count and data sections (for
    /// [`Template::standalone`]).
    memory_section: Range<usize>,
    data_count_section: Option<Range<usize>>,
    data_section: Range<usize>,
}

impl SnapshotImage {
    /// Bytes of data the snapshot carries.
    pub fn data_bytes(&self) -> usize {
        self.segments.iter().map(|(_, r)| r.len()).sum()
    }

    /// Reads the snapshot Wizer wrote; `globals` is the seed main module's
    /// global section, which the snapshot must not have changed (the code
    /// module keeps the seed's).
    pub fn parse(module: Vec<u8>, globals: &[u8]) -> Result<Self, TemplateError> {
        let secs = sections(&module)?;
        let one = |want: u8| secs.iter().find(|s| s.id == want).cloned();
        let memory = one(id::MEMORY).ok_or_else(|| bad("snapshot has no memory"))?;
        let data = one(id::DATA).ok_or_else(|| bad("snapshot has no data"))?;
        let global = one(id::GLOBAL).ok_or_else(|| bad("snapshot has no globals"))?;
        if module[global.payload.clone()] != *globals {
            return Err(bad(
                "the snapshot changed the engine's globals; this engine version is not supported",
            ));
        }
        let mut reader = wasmparser::MemorySectionReader::new(BinaryReader::new(
            &module[memory.payload.clone()],
            memory.payload.start,
        ))
        .map_err(|e| bad(format!("snapshot memory: {e}")))?
        .into_iter();
        let mem = reader
            .next()
            .ok_or_else(|| bad("snapshot has no memory"))?
            .map_err(|e| bad(format!("snapshot memory: {e}")))?;
        if mem.memory64 || mem.shared || reader.next().is_some() {
            return Err(bad("snapshot memory is not one 32-bit memory"));
        }
        let pages = u32::try_from(mem.initial).map_err(|_| bad("snapshot memory too large"))?;
        let reader = wasmparser::DataSectionReader::new(BinaryReader::new(
            &module[data.payload.clone()],
            data.payload.start,
        ))
        .map_err(|e| bad(format!("snapshot data: {e}")))?;
        let mut segments = Vec::new();
        for item in reader {
            let item = item.map_err(|e| bad(format!("snapshot data: {e}")))?;
            match item.kind {
                // Wizer keeps the engine's original segments as empty
                // passive ones (the code never uses them).
                DataKind::Passive => {}
                DataKind::Active {
                    memory_index: 0,
                    offset_expr,
                } => {
                    let mut ops = offset_expr.get_operators_reader();
                    let offset = match ops.read() {
                        Ok(Operator::I32Const { value }) => value as u32,
                        _ => return Err(bad("snapshot data offset is not a constant")),
                    };
                    let start = item.range.end - item.data.len();
                    segments.push((offset, start..item.range.end));
                }
                DataKind::Active { .. } => return Err(bad("snapshot data for another memory")),
            }
        }
        Ok(Self {
            pages,
            segments,
            memory_section: memory.whole,
            data_count_section: one(id::DATA_COUNT).map(|s| s.whole),
            data_section: data.whole,
            module,
        })
    }
}

/// The seed, taken apart (see the module docs).
pub struct Template {
    /// The engine code module (memory imported, no data).
    pub code_module: Vec<u8>,
    /// The name the component imports the code module under.
    pub import_name: String,
    prefix: Vec<u8>,
    shim: Vec<u8>,
    suffix: Vec<u8>,
    seed: Vec<u8>,
    main_section: Range<usize>,
    main_globals: Vec<u8>,
}

/// Scans the seed's core instances in order: the index of the shim
/// module's (argument-less) instance, and the top-level section that
/// instantiates the main module (module 0).
fn core_instances(
    seed: &[u8],
    top: &[Section],
    shim_index: u32,
) -> Result<(u32, usize), TemplateError> {
    let mut core_instances = 0u32;
    let mut shim_instance = None;
    let mut main_instance_at = None;
    for (at, section) in top.iter().enumerate() {
        if section.id != cid::CORE_INSTANCE {
            continue;
        }
        let reader = wasmparser::InstanceSectionReader::new(BinaryReader::new(
            &seed[section.payload.clone()],
            section.payload.start,
        ))
        .map_err(|e| bad(format!("core instances: {e}")))?;
        for instance in reader {
            match instance.map_err(|e| bad(format!("core instances: {e}")))? {
                Instance::Instantiate { module_index, args } => {
                    if module_index == shim_index && args.is_empty() {
                        shim_instance.get_or_insert(core_instances);
                    }
                    if module_index == 0 {
                        main_instance_at = Some(at);
                    }
                }
                Instance::FromExports(_) => {}
            }
            core_instances += 1;
        }
    }
    let shim_instance = shim_instance.ok_or_else(|| bad("the shim is never instantiated"))?;
    let main_instance_at =
        main_instance_at.ok_or_else(|| bad("the main module is never instantiated"))?;
    Ok((shim_instance, main_instance_at))
}

impl Template {
    /// Takes `seed` apart; fails naming what does not have the expected
    /// shape.
    pub fn new(seed: Vec<u8>) -> Result<Self, TemplateError> {
        let top = sections(&seed)?;
        if top.iter().any(|s| s.id == cid::CORE_TYPE) {
            return Err(bad(
                "the seed defines core types; unexpected componentize-js output",
            ));
        }
        let modules: Vec<usize> = (0..top.len())
            .filter(|i| top[*i].id == cid::CORE_MODULE)
            .collect();
        let main_at = *modules
            .first()
            .ok_or_else(|| bad("the seed has no core module"))?;
        let main = seed[top[main_at].payload.clone()].to_vec();
        let mut shim_module = None;
        for (index, at) in modules.iter().enumerate() {
            if exports_table(&seed[top[*at].payload.clone()], "$imports")? {
                shim_module = Some((index as u32, *at));
            }
        }
        let (shim_index, shim_at) =
            shim_module.ok_or_else(|| bad("the seed has no wit-component shim module"))?;
        if shim_at < main_at {
            return Err(bad("the shim module precedes the main module"));
        }

        let (shim_instance, main_instance_at) = core_instances(&seed, &top, shim_index)?;
        if main_instance_at < shim_at {
            return Err(bad(
                "the main module is instantiated before the shim exists",
            ));
        }

        let (code_module, main_globals) = code_module(&main)?;
        let module_type = module_type(&code_module)?;
        let digest = hex::encode(&Sha256::digest(&code_module)[..8]);
        let import_name = format!("berth-js-engine-c{digest}");

        let mut prefix = seed[..8].to_vec();
        for section in &top[..main_at] {
            prefix.extend_from_slice(&seed[section.whole.clone()]);
        }
        let mut types = CoreTypeSection::new();
        types.ty().module(&module_type);
        types.append_to_component(&mut prefix);
        let mut import = ComponentImportSection::new();
        import.import(&import_name, ComponentTypeRef::Module(0));
        import.append_to_component(&mut prefix);
        for section in &top[main_at + 1..shim_at] {
            prefix.extend_from_slice(&seed[section.whole.clone()]);
        }
        let mut suffix = Vec::new();
        for (at, section) in top.iter().enumerate().skip(shim_at + 1) {
            if at == main_instance_at {
                let payload = add_memory_arg(
                    &seed[section.payload.clone()],
                    section.payload.start,
                    shim_instance,
                )?;
                suffix.extend_from_slice(&section_bytes(cid::CORE_INSTANCE, &payload));
            } else {
                suffix.extend_from_slice(&seed[section.whole.clone()]);
            }
        }
        Ok(Self {
            code_module,
            import_name,
            prefix,
            shim: seed[top[shim_at].payload.clone()].to_vec(),
            suffix,
            main_section: top[main_at].whole.clone(),
            main_globals,
            seed,
        })
    }

    /// The seed main module's global section payload (a snapshot must
    /// leave it as it is).
    pub fn globals(&self) -> &[u8] {
        &self.main_globals
    }

    /// A script's component: the engine imported, the shim carrying the
    /// snapshot's memory and data, `custom` sections appended.
    pub fn assemble(
        &self,
        image: &SnapshotImage,
        custom: &[(&str, &[u8])],
    ) -> Result<Vec<u8>, TemplateError> {
        let shim = shim_with_memory(&self.shim, image)?;
        let mut out = Vec::with_capacity(self.prefix.len() + shim.len() + self.suffix.len() + 64);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&section_bytes(cid::CORE_MODULE, &shim));
        out.extend_from_slice(&self.suffix);
        for (name, data) in custom {
            wasm_encoder::CustomSection {
                name: (*name).into(),
                data: (*data).into(),
            }
            .append_to_component(&mut out);
        }
        Ok(out)
    }

    /// What componentize-js would have produced for the same snapshot: the
    /// seed with its main module's memory, data count and data replaced.
    pub fn standalone(&self, image: &SnapshotImage) -> Result<Vec<u8>, TemplateError> {
        let main = &self.seed[self.main_section.clone()];
        let mut at = 0;
        let _id = main[at];
        at += 1;
        let size = read_leb_u32(main, &mut at)? as usize;
        let payload = &main[at..at + size];
        let mut module = payload[..8].to_vec();
        for section in sections(payload)? {
            let raw = &payload[section.whole.clone()];
            match section.id {
                id::MEMORY => module.extend_from_slice(&image.module[image.memory_section.clone()]),
                id::DATA_COUNT => {
                    if let Some(r) = &image.data_count_section {
                        module.extend_from_slice(&image.module[r.clone()]);
                    }
                }
                id::DATA => module.extend_from_slice(&image.module[image.data_section.clone()]),
                _ => module.extend_from_slice(raw),
            }
        }
        let mut out = self.seed[..self.main_section.start].to_vec();
        out.extend_from_slice(&section_bytes(cid::CORE_MODULE, &module));
        out.extend_from_slice(&self.seed[self.main_section.end..]);
        Ok(out)
    }
}

/// Whether a core module exports a table named `name`.
fn exports_table(module: &[u8], name: &str) -> Result<bool, TemplateError> {
    for section in sections(module)? {
        if section.id != id::EXPORT {
            continue;
        }
        let reader = wasmparser::ExportSectionReader::new(BinaryReader::new(
            &module[section.payload.clone()],
            section.payload.start,
        ))
        .map_err(|e| bad(format!("exports: {e}")))?;
        for export in reader {
            let export = export.map_err(|e| bad(format!("exports: {e}")))?;
            if export.name == name && export.kind == wasmparser::ExternalKind::Table {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The main module with its memory imported and its data removed, and
/// its global section payload.
fn code_module(main: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TemplateError> {
    let secs = sections(main)?;
    let mut globals = None;
    let mut memories = 0;
    for section in &secs {
        match section.id {
            id::MEMORY => {
                let mut at = section.payload.start;
                memories += read_leb_u32(main, &mut at)?;
            }
            id::GLOBAL => globals = Some(main[section.payload.clone()].to_vec()),
            id::IMPORT => {
                let reader = wasmparser::ImportSectionReader::new(BinaryReader::new(
                    &main[section.payload.clone()],
                    section.payload.start,
                ))
                .map_err(|e| bad(format!("main imports: {e}")))?;
                for import in reader.into_imports() {
                    let import = import.map_err(|e| bad(format!("main imports: {e}")))?;
                    if matches!(import.ty, TypeRef::Memory(_)) {
                        return Err(bad("the main module already imports a memory"));
                    }
                }
            }
            _ => {}
        }
    }
    if memories != 1 {
        return Err(bad(format!(
            "the main module defines {memories} memories, not 1"
        )));
    }
    let mut memory_import = Vec::new();
    MEMORY_MODULE.encode(&mut memory_import);
    "memory".encode(&mut memory_import);
    memory_import.push(0x02); // memory
    memory_import.push(0x00); // limits: min only
    leb(0, &mut memory_import);
    let mut out = main[..8].to_vec();
    let mut imported = false;
    for section in &secs {
        match section.id {
            id::IMPORT => {
                let payload =
                    append_entries(&main[section.payload.clone()], &[memory_import.clone()])?;
                out.extend_from_slice(&section_bytes(id::IMPORT, &payload));
                imported = true;
            }
            id::MEMORY | id::DATA | id::DATA_COUNT => {}
            _ => out.extend_from_slice(&main[section.whole.clone()]),
        }
    }
    if !imported {
        return Err(bad("the main module imports nothing; unexpected"));
    }
    Ok((out, globals.unwrap_or_default()))
}

/// The code module's type as a component-level module type.
fn module_type(code: &[u8]) -> Result<ModuleType, TemplateError> {
    let mut ty = ModuleType::new();
    let mut spaces = IndexSpaces::default();
    let IndexSpaces {
        func_types,
        tables,
        memories,
        globals,
    } = &mut spaces;
    let mut exports = Vec::new();
    let err = |e: wasmparser::BinaryReaderError| bad(format!("code module: {e}"));
    for payload in wasmparser::Parser::new(0).parse_all(code) {
        match payload.map_err(err)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    let group = group.map_err(err)?;
                    let subtypes: Vec<wasm_encoder::SubType> = group
                        .into_types()
                        .map(wasm_encoder::SubType::try_from)
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad(format!("code module type: {e}")))?;
                    if subtypes.len() == 1 {
                        ty.ty().subtype(&subtypes[0]);
                    } else {
                        ty.ty().rec(subtypes);
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(err)?;
                    match import.ty {
                        TypeRef::Func(t) | TypeRef::FuncExact(t) => func_types.push(t),
                        TypeRef::Table(t) => tables.push(t),
                        TypeRef::Memory(m) => memories.push(m),
                        TypeRef::Global(g) => globals.push(g),
                        TypeRef::Tag(_) => {}
                    }
                    let entity = EntityType::try_from(import.ty)
                        .map_err(|e| bad(format!("code module import: {e}")))?;
                    ty.import(import.module, import.name, entity);
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    func_types.push(t.map_err(err)?);
                }
            }
            Payload::TableSection(reader) => {
                for t in reader {
                    tables.push(t.map_err(err)?.ty);
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    memories.push(m.map_err(err)?);
                }
            }
            Payload::GlobalSection(reader) => {
                for g in reader {
                    globals.push(g.map_err(err)?.ty);
                }
            }
            Payload::ExportSection(reader) => {
                for e in reader {
                    let e = e.map_err(err)?;
                    exports.push((e.name.to_owned(), e.kind, e.index));
                }
            }
            _ => {}
        }
    }
    for (name, kind, index) in exports {
        ty.export(&name, spaces.entity(kind, index)?);
    }
    Ok(ty)
}

/// The types of a core module's functions, tables, memories and globals,
/// imports first, by index.
#[derive(Default)]
struct IndexSpaces {
    func_types: Vec<u32>,
    tables: Vec<wasmparser::TableType>,
    memories: Vec<wasmparser::MemoryType>,
    globals: Vec<wasmparser::GlobalType>,
}

impl IndexSpaces {
    /// The type of the `kind` item at `index`, as an export declares it.
    fn entity(
        &self,
        kind: wasmparser::ExternalKind,
        index: u32,
    ) -> Result<EntityType, TemplateError> {
        let missing = || bad("code module export refers to nothing");
        let index = index as usize;
        Ok(match kind {
            wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                EntityType::Function(*self.func_types.get(index).ok_or_else(missing)?)
            }
            wasmparser::ExternalKind::Table => EntityType::Table(
                wasm_encoder::TableType::try_from(*self.tables.get(index).ok_or_else(missing)?)
                    .map_err(|e| bad(format!("code module table: {e}")))?,
            ),
            wasmparser::ExternalKind::Memory => {
                EntityType::Memory((*self.memories.get(index).ok_or_else(missing)?).into())
            }
            wasmparser::ExternalKind::Global => EntityType::Global(
                wasm_encoder::GlobalType::try_from(*self.globals.get(index).ok_or_else(missing)?)
                    .map_err(|e| bad(format!("code module global: {e}")))?,
            ),
            wasmparser::ExternalKind::Tag => return Err(bad("code module exports a tag")),
        })
    }
}

/// A core instance section with the main module's instantiation given the
/// shim instance as [`MEMORY_MODULE`].
fn add_memory_arg(
    payload: &[u8],
    offset: usize,
    shim_instance: u32,
) -> Result<Vec<u8>, TemplateError> {
    let reader = wasmparser::InstanceSectionReader::new(BinaryReader::new(payload, offset))
        .map_err(|e| bad(format!("core instances: {e}")))?;
    let mut out = wasm_encoder::InstanceSection::new();
    for instance in reader {
        match instance.map_err(|e| bad(format!("core instances: {e}")))? {
            Instance::Instantiate { module_index, args } => {
                let mut list: Vec<(&str, ModuleArg)> = args
                    .iter()
                    .map(|a| (a.name, ModuleArg::Instance(a.index)))
                    .collect();
                if module_index == 0 {
                    list.push((MEMORY_MODULE, ModuleArg::Instance(shim_instance)));
                }
                out.instantiate(module_index, list);
            }
            Instance::FromExports(exports) => {
                out.export_items(
                    exports
                        .iter()
                        .map(|e| (e.name, wasm_encoder::ExportKind::from(e.kind), e.index)),
                );
            }
        }
    }
    let mut bytes = Vec::new();
    out.encode(&mut bytes);
    // `encode` writes the section's size prefix; return the payload only.
    let mut at = 0;
    let size = read_leb_u32(&bytes, &mut at)? as usize;
    Ok(bytes[at..at + size].to_vec())
}

/// The shim module with a memory of `image.pages`, exported as `memory`,
/// holding `image`'s data.
fn shim_with_memory(shim: &[u8], image: &SnapshotImage) -> Result<Vec<u8>, TemplateError> {
    let secs = sections(shim)?;
    if secs
        .iter()
        .any(|s| matches!(s.id, id::MEMORY | id::DATA | id::DATA_COUNT))
    {
        return Err(bad("the shim module already has a memory or data"));
    }
    let mut memory = Vec::new();
    leb(1, &mut memory);
    memory.push(0x00);
    leb(image.pages, &mut memory);
    let mut export = Vec::new();
    "memory".encode(&mut export);
    export.push(0x02);
    leb(0, &mut export);
    let mut data = wasm_encoder::DataSection::new();
    for (offset, range) in &image.segments {
        data.active(
            0,
            &wasm_encoder::ConstExpr::i32_const(*offset as i32),
            image.module[range.clone()].iter().copied(),
        );
    }
    let mut data_bytes = Vec::new();
    data.encode(&mut data_bytes);

    let mut out = shim[..8].to_vec();
    let mut memory_done = false;
    let mut export_done = false;
    let mut data_done = false;
    for section in &secs {
        let raw = &shim[section.whole.clone()];
        if !memory_done && section.id != id::CUSTOM && section.id > id::TABLE {
            out.extend_from_slice(&section_bytes(id::MEMORY, &memory));
            memory_done = true;
        }
        match section.id {
            id::EXPORT => {
                let payload = append_entries(&shim[section.payload.clone()], &[export.clone()])?;
                out.extend_from_slice(&section_bytes(id::EXPORT, &payload));
                export_done = true;
            }
            id::CODE => {
                out.extend_from_slice(raw);
                out.push(id::DATA);
                out.extend_from_slice(&data_bytes);
                data_done = true;
            }
            _ => out.extend_from_slice(raw),
        }
    }
    if !memory_done || !export_done || !data_done {
        return Err(bad("the shim module lacks exports or code"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_reject_truncation_and_garbage() {
        assert!(sections(b"nope").is_err());
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        assert_eq!(sections(&m).expect("empty module").len(), 0);
        m.extend_from_slice(&[1, 5, 0]);
        assert!(sections(&m).is_err(), "section longer than the file");
    }

    #[test]
    fn appended_entries_keep_the_old_ones() {
        let payload = [2u8, 0xaa, 0xbb];
        let out = append_entries(&payload, &[vec![0xcc]]).expect("append");
        assert_eq!(out, vec![3, 0xaa, 0xbb, 0xcc]);
    }
}
