import Hummingbird
import SurveyDomain

/// The context of every request. `company` is set by `TokenAuthMiddleware` once the bearer
/// token is verified.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var company: CompanyID?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { maximumBodySize }
}

/// The context of the tenant API's handlers: a company is always known, so a handler
/// cannot forget to check it.
public struct TenantRequestContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let company: CompanyID

    public init(context: AppRequestContext) throws {
        guard let company = context.company else { throw Problem.unauthorized }
        self.coreContext = context.coreContext
        self.company = company
    }

    public var maxUploadSize: Int { maximumBodySize }
}
