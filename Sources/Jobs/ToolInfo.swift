/// The tool's identity, recorded in manifests and drill evidence.
public enum ToolInfo {
  public static let version = "0.1.0"
}
