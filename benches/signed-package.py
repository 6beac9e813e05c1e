"""A signed MSIX package of a given size for benchmarking `appattach inspect`'s
verification (BENCHMARKS.md): AppxManifest.xml and one file of SIZE pseudo-random bytes
(incompressible, stored), a real block map, [Content_Types].xml deflated as MakeAppx
writes it. Sign it with osslsigncode afterwards (benches/verify-package.sh does).

    python3 benches/signed-package.py SIZE   # writes bench.msix in the current folder
"""
import hashlib, base64, zipfile, os, sys
size = int(sys.argv[1])
pub = "CN=Contoso Bench, O=Contoso, C=US"
manifest = f'''<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10" xmlns:uap="http://schemas.microsoft.com/appx/manifest/uap/windows10">
  <Identity Name="Contoso.Bench" Publisher="{pub}" Version="1.0.0.0" ProcessorArchitecture="x64"/>
  <Properties><DisplayName>Bench</DisplayName><PublisherDisplayName>Contoso</PublisherDisplayName><Logo>logo.png</Logo></Properties>
  <Dependencies><TargetDeviceFamily Name="Windows.Desktop" MinVersion="10.0.17763.0" MaxVersionTested="10.0.22621.0"/></Dependencies>
  <Applications><Application Id="Bench" Executable="bench.exe" EntryPoint="Windows.FullTrustApplication"><uap:VisualElements DisplayName="Bench" Description="b" BackgroundColor="transparent" Square150x150Logo="logo.png" Square44x44Logo="logo.png"/></Application></Applications>
</Package>'''.encode()
# a file of `size` bytes: pseudo-random (incompressible) blocks
data = bytearray()
h = hashlib.sha256(b"seed").digest()
while len(data) < size:
    h = hashlib.sha256(h).digest()
    data += h * 2048
data = bytes(data[:size])
files = [("AppxManifest.xml", manifest), ("bench.bin", data)]
bm = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<BlockMap xmlns="http://schemas.microsoft.com/appx/2010/blockmap" HashMethod="http://www.w3.org/2001/04/xmlenc#sha256">']
for name, b in files:
    bm.append(f'<File Name="{name}" Size="{len(b)}" LfhSize="{30+len(name)}">')
    for i in range(0, len(b), 65536):
        bm.append(f'<Block Hash="{base64.b64encode(hashlib.sha256(b[i:i+65536]).digest()).decode()}"/>')
    bm.append('</File>')
bm.append('</BlockMap>')
ct = '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="bin" ContentType="application/octet-stream"/><Override PartName="/AppxManifest.xml" ContentType="application/vnd.ms-appx.manifest+xml"/><Override PartName="/AppxBlockMap.xml" ContentType="application/vnd.ms-appx.blockmap+xml"/></Types>'
with zipfile.ZipFile("bench.msix", "w", zipfile.ZIP_STORED) as z:
    for name, b in files:
        z.writestr(name, b)
    z.writestr("AppxBlockMap.xml", "".join(bm), compress_type=zipfile.ZIP_DEFLATED)
    z.writestr("[Content_Types].xml", ct, compress_type=zipfile.ZIP_DEFLATED)
