import HubIngest
import Postgres

/// `DeviceAdmin` over PostgreSQL, on the control-plane database thread.
public struct PostgresDeviceAdmin: DeviceAdmin {
    private let executor: DatabaseExecutor

    public init(executor: DatabaseExecutor) {
        self.executor = executor
    }

    public func create(id: String, labelsJSON: String) async throws -> (record: DeviceRecord, token: String) {
        try await run { try $0.create(id: id, labelsJSON: labelsJSON) }
    }

    public func list(_ filter: DeviceFilter) async throws -> [DeviceInfo] {
        try await run { try $0.infos(filter) }
    }

    public func info(id: String) async throws -> DeviceInfo? {
        try await run { try $0.infos(id: id).first }
    }

    public func update(id: String, enabled: Bool?, labelsJSON: String?) async throws -> DeviceRecord? {
        try await run { try $0.update(id: id, enabled: enabled, labelsJSON: labelsJSON) }
    }

    public func delete(id: String, purge: Bool) async throws -> Bool {
        do {
            try await run { try $0.remove(id: id, purge: purge) }
            return true
        } catch DeviceAdminError.notFound {
            return false
        }
    }

    public func rotateToken(id: String) async throws -> (record: DeviceRecord, token: String)? {
        do {
            return try await run { try $0.rotate(id: id) }
        } catch DeviceAdminError.notFound {
            return nil
        }
    }

    /// Runs on the database thread, turning the store's refusals into `DeviceAdminError`.
    private func run<T: Sendable>(_ body: @escaping @Sendable (DeviceStore) throws -> T) async throws -> T {
        try await executor.run { connection in
            do {
                return try body(DeviceStore(connection: connection))
            } catch let failure as DeviceStore.Failure {
                switch failure {
                case .invalidID: throw DeviceAdminError.invalidID
                case .exists: throw DeviceAdminError.exists
                case .notFound: throw DeviceAdminError.notFound
                }
            } catch let error as PostgresError where error.sqlState == "22P02" {
                throw DeviceAdminError.badLabels
            }
        }
    }
}
