import Hummingbird
import NIOCore
import SurveyDomain

/// The context of every request. `company` is set by `TokenAuthMiddleware` once the bearer
/// token is verified.
public struct AppRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var company: CompanyID?
    /// The verified token's scope, set with `company`.
    public var scope: TokenScope?
    /// The connection's peer; `nil` in in-process tests.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    public var maxUploadSize: Int { maximumBodySize }
}

/// The context of the tenant API's handlers: a company is always known, so a handler
/// cannot forget to check it.
public struct TenantRequestContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let company: CompanyID
    public let scope: TokenScope

    public init(context: AppRequestContext) throws {
        guard let company = context.company, let scope = context.scope else { throw Problem.unauthorized }
        self.coreContext = context.coreContext
        self.company = company
        self.scope = scope
    }

    /// For the company administrator's routes (its tokens and settings).
    func requireAdmin() throws {
        guard scope == .admin else { throw Problem.adminScopeRequired }
    }

    public var maxUploadSize: Int { maximumBodySize }
}
